/// Arithmetic-coded JPEG (SOF9 sequential, SOF10 progressive): the QM-coder of ITU T.81 Annex D
/// and the coefficient models of F.1.4 and G.1.3. libjpeg-turbo, and so TensorFlow's decode_jpeg,
/// decodes these; they are rare, but a dataset of millions of files meets one.
///
/// The decoder is kept apart from the models: `QMDecoder` turns adaptive binary decisions into
/// bits; `ArithmeticScan` says which statistics bin each decision of a coefficient uses.

/// T.81 Table D.2, one row per state: Qe, the next state after an LPS and after an MPS, and whether
/// an LPS in this state swaps the meaning of MPS. Row 113 is not in the table: it is the fixed
/// 0.5 estimate (T.851 Table 5) that signs and refinement bits use, a state that never moves.
private let probabilityStates: [(qe: Int32, nextLPS: UInt8, nextMPS: UInt8, switchMPS: Bool)] = [
  (0x5A1D, 1, 1, true), (0x2586, 14, 2, false), (0x1114, 16, 3, false), (0x080B, 18, 4, false),
  (0x03D8, 20, 5, false), (0x01DA, 23, 6, false), (0x00E5, 25, 7, false), (0x006F, 28, 8, false),
  (0x0036, 30, 9, false), (0x001A, 33, 10, false), (0x000D, 35, 11, false), (0x0006, 9, 12, false),
  (0x0003, 10, 13, false), (0x0001, 12, 13, false), (0x5A7F, 15, 15, true), (0x3F25, 36, 16, false),
  (0x2CF2, 38, 17, false), (0x207C, 39, 18, false), (0x17B9, 40, 19, false), (0x1182, 42, 20, false),
  (0x0CEF, 43, 21, false), (0x09A1, 45, 22, false), (0x072F, 46, 23, false), (0x055C, 48, 24, false),
  (0x0406, 49, 25, false), (0x0303, 51, 26, false), (0x0240, 52, 27, false), (0x01B1, 54, 28, false),
  (0x0144, 56, 29, false), (0x00F5, 57, 30, false), (0x00B7, 59, 31, false), (0x008A, 60, 32, false),
  (0x0068, 62, 33, false), (0x004E, 63, 34, false), (0x003B, 32, 35, false), (0x002C, 33, 9, false),
  (0x5AE1, 37, 37, true), (0x484C, 64, 38, false), (0x3A0D, 65, 39, false), (0x2EF1, 67, 40, false),
  (0x261F, 68, 41, false), (0x1F33, 69, 42, false), (0x19A8, 70, 43, false), (0x1518, 72, 44, false),
  (0x1177, 73, 45, false), (0x0E74, 74, 46, false), (0x0BFB, 75, 47, false), (0x09F8, 77, 48, false),
  (0x0861, 78, 49, false), (0x0706, 79, 50, false), (0x05CD, 48, 51, false), (0x04DE, 50, 52, false),
  (0x040F, 50, 53, false), (0x0363, 51, 54, false), (0x02D4, 52, 55, false), (0x025C, 53, 56, false),
  (0x01F8, 54, 57, false), (0x01A4, 55, 58, false), (0x0160, 56, 59, false), (0x0125, 57, 60, false),
  (0x00F6, 58, 61, false), (0x00CB, 59, 62, false), (0x00AB, 61, 63, false), (0x008F, 61, 32, false),
  (0x5B12, 65, 65, true), (0x4D04, 80, 66, false), (0x412C, 81, 67, false), (0x37D8, 82, 68, false),
  (0x2FE8, 83, 69, false), (0x293C, 84, 70, false), (0x2379, 86, 71, false), (0x1EDF, 87, 72, false),
  (0x1AA9, 87, 73, false), (0x174E, 72, 74, false), (0x1424, 72, 75, false), (0x119C, 74, 76, false),
  (0x0F6B, 74, 77, false), (0x0D51, 75, 78, false), (0x0BB6, 77, 79, false), (0x0A40, 77, 48, false),
  (0x5832, 80, 81, true), (0x4D1C, 88, 82, false), (0x438E, 89, 83, false), (0x3BDD, 90, 84, false),
  (0x34EE, 91, 85, false), (0x2EAE, 92, 86, false), (0x299A, 93, 87, false), (0x2516, 86, 71, false),
  (0x5570, 88, 89, true), (0x4CA9, 95, 90, false), (0x44D9, 96, 91, false), (0x3E22, 97, 92, false),
  (0x3824, 99, 93, false), (0x32B4, 99, 94, false), (0x2E17, 93, 86, false), (0x56A8, 95, 96, true),
  (0x4F46, 101, 97, false), (0x47E5, 102, 98, false), (0x41CF, 103, 99, false), (0x3C3D, 104, 100, false),
  (0x375E, 99, 93, false), (0x5231, 105, 102, false), (0x4C0F, 106, 103, false), (0x4639, 107, 104, false),
  (0x415E, 103, 99, false), (0x5627, 105, 106, true), (0x50E7, 108, 107, false), (0x4B85, 109, 103, false),
  (0x5597, 110, 109, false), (0x504F, 111, 107, false), (0x5A10, 110, 111, true), (0x5522, 112, 109, false),
  (0x59EB, 112, 111, true),
  (0x5A1D, 113, 113, false),
]

/// A statistics bin: the state index in the low 7 bits, the MPS in the top bit. Zero is state 0
/// with MPS 0, where every bin starts (T.81 D.1.5.1).
typealias ArithmeticBin = UInt8

/// The fixed-probability bin's value (`probabilityStates[113]`).
let fixedProbabilityBin: ArithmeticBin = 113

/// The QM-coder's decoder (T.81 D.2), registers as the standard lays them out: the interval size
/// `a` (0x8000...0x10000 between decisions) and the code register `c`, whose bits 16 and up are
/// the standard's Cx, compared with `a`; below them wait `ct` bits of the next input byte.
struct QMDecoder {
  let base: UnsafePointer<UInt8>
  let end: Int
  /// The next byte to read. Left at the 0xFF of a marker once one is reached.
  var position: Int
  var a = 0x10000
  var c = 0
  var ct = 0
  /// A marker was reached: from here on the coder reads zeros (what the encoder's flush assumes).
  var reachedMarker = false
  /// The bytes ended without a marker: the data is truncated.
  var overran = false

  /// INITDEC: two bytes into Cx.
  init(base: UnsafePointer<UInt8>, end: Int, position: Int) {
    self.base = base; self.end = end; self.position = position
    byteIn(); c <<= 8
    byteIn(); c <<= 8
  }

  /// BYTEIN: the next byte into bits 8–15 of `c`; a stuffed FF 00 is the byte FF.
  mutating func byteIn() {
    guard !reachedMarker else { return }
    guard position < end else { overran = true; return }
    let byte = base[position]
    if byte != 0xFF { c |= Int(byte) << 8; position += 1; return }
    var next = position + 1
    while next < end && base[next] == 0xFF { next += 1 }   // fill bytes
    if next < end && base[next] == 0 {
      c |= 0xFF << 8
      position = next + 1
    } else if next < end {
      reachedMarker = true
    } else {
      overran = true
    }
  }

  /// DECODE (D.2.4) with the probability estimation of D.2.5: one binary decision in `bin`'s
  /// context, and the bin's state moved on.
  @inline(__always)
  mutating func decode(_ bin: inout ArithmeticBin) -> Int {
    let index = Int(bin & 0x7F), mps = Int(bin >> 7)
    let state = probabilityStates[index]
    let qe = Int(state.qe)
    a -= qe
    let decision: Int
    if c >> 16 < a {
      if a >= 0x8000 { return mps }
      // The MPS sub-interval became the smaller one: conditional exchange.
      if a < qe { decision = 1 - mps; bin = afterLPS(index, mps) } else { decision = mps; bin = afterMPS(index, mps) }
    } else {
      c -= a << 16
      if a < qe { decision = mps; bin = afterMPS(index, mps) } else { decision = 1 - mps; bin = afterLPS(index, mps) }
      a = qe
    }
    // RENORMD
    repeat {
      if ct == 0 { byteIn(); ct = 8 }
      a <<= 1; c <<= 1; ct -= 1
    } while a < 0x8000
    return decision
  }

  @inline(__always) private func afterMPS(_ index: Int, _ mps: Int) -> ArithmeticBin {
    UInt8(mps << 7) | probabilityStates[index].nextMPS
  }

  @inline(__always) private func afterLPS(_ index: Int, _ mps: Int) -> ArithmeticBin {
    let s = probabilityStates[index]
    return UInt8((s.switchMPS ? 1 - mps : mps) << 7) | s.nextLPS
  }
}

/// A DAC segment's conditioning: per DC table the bounds L and U of the "small difference"
/// class, per AC table the band limit Kx (T.81 F.1.4.4.1.2, F.1.4.4.2; defaults of B.2.4.3).
struct ArithmeticConditioning {
  var dcLower = [Int](repeating: 0, count: 4), dcUpper = [Int](repeating: 1, count: 4)
  var acBand = [Int](repeating: 5, count: 4)
}

/// Statistics of a scan's tables and the models over them.
struct ArithmeticScan {
  var coder: QMDecoder
  let scan: Scan
  let conditioning: ArithmeticConditioning
  /// 64 bins per DC table (49 used), 256 per AC table (245 used), as T.81 sizes them.
  var dcStats = [ArithmeticBin](repeating: 0, count: 4 * 64)
  var acStats = [ArithmeticBin](repeating: 0, count: 4 * 256)
  var fixed = fixedProbabilityBin
  var predictors = [Int](repeating: 0, count: 4)
  /// Per scan component: bin offset S0 of its next DC difference (0, 4, 8, 12 or 16).
  var dcContext = [Int](repeating: 0, count: 4)
  let zigzag = UnsafePointer(naturalOrderTable)

  init(coder: QMDecoder, scan: Scan, conditioning: ArithmeticConditioning) {
    self.coder = coder; self.scan = scan; self.conditioning = conditioning
  }

  /// After RSTn: fresh statistics, predictors and coder (T.81 F.1.4.5, G.1.3.3).
  mutating func restart(at position: Int) {
    for i in dcStats.indices { dcStats[i] = 0 }
    for i in acStats.indices { acStats[i] = 0 }
    for i in 0..<4 { predictors[i] = 0; dcContext[i] = 0 }
    coder = QMDecoder(base: coder.base, end: coder.end, position: position)
  }

  @inline(__always)
  mutating func decodeBlock(_ kind: Scan.Kind, _ block: UnsafeMutablePointer<Int16>, _ lane: Int,
                            dcTable: Int, acTable: Int) throws(JPEGError) {
    switch kind {
    case .sequential:
      try decodeDC(block, lane, table: dcTable, shift: 0)
      try decodeAC(block, table: acTable, from: 1, through: 63, shift: 0)
    case .dcFirst: try decodeDC(block, lane, table: dcTable, shift: scan.al)
    case .dcRefine: if coder.decode(&fixed) != 0 { block[0] |= Int16(truncatingIfNeeded: 1 << scan.al) }
    case .acFirst: try decodeAC(block, table: acTable, from: scan.ss, through: scan.se, shift: scan.al)
    case .acRefine: try refineAC(block, table: acTable)
    }
  }

  /// F.1.4.4.1 / Figure F.19: a DC difference in the context of the previous one.
  @inline(__always)
  mutating func decodeDC(_ block: UnsafeMutablePointer<Int16>, _ lane: Int, table: Int, shift: Int) throws(JPEGError) {
    let bins = table * 64
    var s = bins + dcContext[lane]
    if coder.decode(&dcStats[s]) == 0 {
      dcContext[lane] = 0
    } else {
      let sign = coder.decode(&dcStats[s + 1])
      s += 2 + sign
      var m = coder.decode(&dcStats[s])
      if m != 0 {
        s = bins + 20   // X1
        while coder.decode(&dcStats[s]) != 0 {
          m <<= 1
          guard m < 0x8000 else { throw .corrupt("arithmetic-coded DC difference of more than 15 bits") }
          s += 1
        }
      }
      // The class of this difference conditions the next (F.1.4.4.1.2).
      if m < (1 << conditioning.dcLower[table]) >> 1 {
        dcContext[lane] = 0
      } else if m > (1 << conditioning.dcUpper[table]) >> 1 {
        dcContext[lane] = 12 + 4 * sign
      } else {
        dcContext[lane] = 4 + 4 * sign
      }
      var v = m
      s += 14   // the magnitude bits' bins sit 14 above the categories'
      while m > 1 {
        m >>= 1
        if coder.decode(&dcStats[s]) != 0 { v |= m }
      }
      v += 1
      predictors[lane] &+= sign != 0 ? -v : v
    }
    block[0] = Int16(truncatingIfNeeded: predictors[lane] << shift)
  }

  /// F.1.4.4.2 / Figure F.20: the band's coefficients, each position k with its own end-of-block,
  /// zero and first magnitude bins; the sign at the fixed 0.5 estimate.
  @inline(__always)
  mutating func decodeAC(_ block: UnsafeMutablePointer<Int16>, table: Int, from first: Int, through last: Int,
                         shift: Int) throws(JPEGError) {
    let bins = table * 256
    var k = first
    while k <= last {
      var s = bins + 3 * (k - 1)
      if coder.decode(&acStats[s]) != 0 { break }   // end of block
      while coder.decode(&acStats[s + 1]) == 0 {
        s += 3; k += 1
        guard k <= last else { throw .corrupt("arithmetic-coded AC coefficients run past the end of the band") }
      }
      let sign = coder.decode(&fixed)
      s += 2
      var m = coder.decode(&acStats[s])
      if m != 0 && coder.decode(&acStats[s]) != 0 {
        m <<= 1
        s = bins + (k <= conditioning.acBand[table] ? 189 : 217)   // X2 of the low or high band
        while coder.decode(&acStats[s]) != 0 {
          m <<= 1
          guard m < 0x8000 else { throw .corrupt("arithmetic-coded AC coefficient of more than 15 bits") }
          s += 1
        }
      }
      var v = m
      s += 14
      while m > 1 {
        m >>= 1
        if coder.decode(&acStats[s]) != 0 { v |= m }
      }
      v += 1
      block[zigzag[k]] = Int16(truncatingIfNeeded: (sign != 0 ? -v : v) << shift)
      k += 1
    }
  }

  /// G.1.3.3: one bit for each coefficient already nonzero, new coefficients of ±(1 << al); no
  /// end-of-block decision before the previous scans' last nonzero coefficient.
  mutating func refineAC(_ block: UnsafeMutablePointer<Int16>, table: Int) throws(JPEGError) {
    let bins = table * 256
    let plus = Int16(truncatingIfNeeded: 1 << scan.al), minus = Int16(truncatingIfNeeded: -1 << scan.al)
    var previousEnd = scan.se
    while previousEnd > 0 && block[zigzag[previousEnd]] == 0 { previousEnd -= 1 }
    var k = scan.ss
    while k <= scan.se {
      var s = bins + 3 * (k - 1)
      if k > previousEnd && coder.decode(&acStats[s]) != 0 { break }
      while true {
        let z = zigzag[k]
        if block[z] != 0 {
          if coder.decode(&acStats[s + 2]) != 0 { block[z] &+= block[z] < 0 ? minus : plus }
          break
        }
        if coder.decode(&acStats[s + 1]) != 0 {
          block[z] = coder.decode(&fixed) != 0 ? minus : plus
          break
        }
        s += 3; k += 1
        guard k <= scan.se else { throw .corrupt("arithmetic-coded refinement runs past the end of the band") }
      }
      k += 1
    }
  }
}

extension Decoder {
  /// DAC: conditioning for the arithmetic-coded scans that follow (T.81 B.2.4.3).
  mutating func readArithmeticConditioning(_ start: Int, _ end: Int) throws(JPEGError) {
    guard (end - start) % 2 == 0 else { throw .corrupt("DAC segment of odd length \(end - start + 2)") }
    for o in stride(from: start, to: end, by: 2) {
      let tableClass = byte(o) >> 4, id = byte(o) & 15, value = byte(o + 1)
      guard id < 4, tableClass <= 1 else { throw .corrupt("DAC names table class \(tableClass) id \(id)") }
      if tableClass == 0 {
        let lower = value & 15, upper = value >> 4
        guard lower <= upper else { throw .corrupt("DAC for DC table \(id): L = \(lower) above U = \(upper)") }
        arithmeticConditioning.dcLower[id] = lower
        arithmeticConditioning.dcUpper[id] = upper
      } else {
        guard (1...63).contains(value) else { throw .corrupt("DAC for AC table \(id): Kx = \(value)") }
        arithmeticConditioning.acBand[id] = value
      }
    }
  }

  /// The arithmetic-coded counterpart of `decodeScan`: the same block order and restart intervals.
  mutating func decodeArithmeticScan(_ scan: Scan, frame: Frame) throws(JPEGError) {
    let kind = scan.kind(progressive: frame.progressive)
    let blocks = try scan.components.map { c throws(JPEGError) in try c.coefficients() }
    var state = ArithmeticScan(coder: QMDecoder(base: base, end: count, position: position), scan: scan,
                               conditioning: arithmeticConditioning)
    let scanNumber = scans + 1
    var mcu = 0

    func restartIfDue(_ state: inout ArithmeticScan) throws(JPEGError) {
      guard restartInterval > 0, mcu > 0, mcu % restartInterval == 0 else { return }
      // The coder may stop short of the marker (it reads only what its decisions need).
      state.restart(at: try passRestartMarker(base, end: count, from: state.coder.position, expected: (mcu / restartInterval - 1) & 7))
    }

    if scan.components.count == 1 {
      let c = scan.components[0], coefficients = blocks[0]
      let blocksWide = (c.width + 7) / 8, blocksHigh = (c.height + 7) / 8
      for by in 0..<blocksHigh {
        for bx in 0..<blocksWide {
          try restartIfDue(&state)
          try state.decodeBlock(kind, coefficients + (by * c.blocksPerLine + bx) * 64, 0, dcTable: c.dcTable, acTable: c.acTable)
          mcu += 1
        }
        if state.coder.overran { throw .truncated("scan \(scanNumber) of component \(c.id) ends in block row \(by) of \(blocksHigh)") }
      }
    } else {
      for my in 0..<frame.mcusPerColumn {
        for mx in 0..<frame.mcusPerLine {
          try restartIfDue(&state)
          for (i, c) in scan.components.enumerated() {
            for v in 0..<c.v {
              for h in 0..<c.h {
                let block = blocks[i] + ((my * c.v + v) * c.blocksPerLine + mx * c.h + h) * 64
                try state.decodeBlock(kind, block, i, dcTable: c.dcTable, acTable: c.acTable)
              }
            }
          }
          mcu += 1
        }
        if state.coder.overran { throw .truncated("scan \(scanNumber) ends in MCU row \(my) of \(frame.mcusPerColumn)") }
      }
    }
    position = state.coder.position
  }
}
