#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// libm under names that do not collide with the `exp`/`log` helpers on Double in Loss.swift.
@inline(__always) func libmExp(_ x: Double) -> Double { exp(x) }
@inline(__always) func libmLog(_ x: Double) -> Double { log(x) }
