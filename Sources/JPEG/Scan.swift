/// One scan (SOS): which components, which zigzag band `ss...se`, and the successive-approximation
/// bit positions `ah` (previous) and `al` (this scan) of a progressive JPEG.
struct Scan {
  let components: [Component]
  let ss: Int, se: Int, ah: Int, al: Int

  enum Kind { case sequential, dcFirst, dcRefine, acFirst, acRefine }

  func kind(progressive: Bool) -> Kind {
    guard progressive else { return .sequential }
    if ss == 0 { return ah == 0 ? .dcFirst : .dcRefine }
    return ah == 0 ? .acFirst : .acRefine
  }
}

extension Decoder {
  /// Decodes the entropy-coded data of `scan` into the components' coefficients. Blocks are
  /// visited in MCU order for an interleaved scan and in raster order of the component's own
  /// blocks for a single-component scan (T.81 A.2).
  mutating func decodeHuffmanScan(_ scan: Scan, frame: Frame) throws(JPEGError) {
    let kind = scan.kind(progressive: frame.progressive)
    // Plain views of the tables and the components for the loops below: no reference counting
    // or class access per block. `dcTables`/`acTables` keep the tables alive meanwhile.
    var lanes: [Lane] = []
    for c in scan.components {
      let dc = dcTables[c.dcTable], ac = acTables[c.acTable]
      let needsDC = kind == .sequential || kind == .dcFirst
      let needsAC = kind == .sequential || kind == .acFirst || kind == .acRefine
      if needsDC && dc == nil { throw .corrupt("component \(c.id) uses undefined DC Huffman table \(c.dcTable)") }
      // As libjpeg, when a scan puts it to use: a DC table may not code sizes above 15.
      if needsDC, let bad = dc!.largestSymbol, bad > 15 {
        throw .corrupt("DC Huffman table \(c.dcTable) has symbol \(bad) (sizes above 15 are invalid)")
      }
      if needsAC && ac == nil { throw .corrupt("component \(c.id) uses undefined AC Huffman table \(c.acTable)") }
      let unused = HuffmanTable.empty.view   // for a table the scan kind never reads
      lanes.append(Lane(dc: dc?.view ?? unused, ac: ac?.view ?? unused, coefficients: try c.coefficients(),
                        blocksPerLine: c.blocksPerLine, h: c.h, v: c.v))
    }
    var state = EntropyState(reader: BitReader(base: base, end: count, position: position), scan: scan)
    let scanNumber = scans + 1
    var mcu = 0

    func restartIfDue(_ state: inout EntropyState) throws(JPEGError) {
      guard restartInterval > 0, mcu > 0, mcu % restartInterval == 0 else { return }
      if state.reader.overran { throw .truncated("scan \(scanNumber) ends before MCU \(mcu)") }
      try state.restart(expected: (mcu / restartInterval - 1) & 7)
    }

    if scan.components.count == 1 {
      let c = scan.components[0], lane = lanes[0]
      let blocksWide = (c.width + 7) / 8, blocksHigh = (c.height + 7) / 8
      for by in 0..<blocksHigh {
        for bx in 0..<blocksWide {
          try restartIfDue(&state)
          try state.decodeBlock(kind, lane.coefficients + (by * lane.blocksPerLine + bx) * 64, 0, lane)
          mcu += 1
        }
        if state.reader.overran { throw .truncated("scan \(scanNumber) of component \(c.id) ends in block row \(by) of \(blocksHigh)") }
      }
    } else {
      for my in 0..<frame.mcusPerColumn {
        for mx in 0..<frame.mcusPerLine {
          try restartIfDue(&state)
          for i in 0..<lanes.count {
            let lane = lanes[i]
            for v in 0..<lane.v {
              for h in 0..<lane.h {
                let block = lane.coefficients + ((my * lane.v + v) * lane.blocksPerLine + mx * lane.h + h) * 64
                try state.decodeBlock(kind, block, i, lane)
              }
            }
          }
          mcu += 1
        }
        if state.reader.overran { throw .truncated("scan \(scanNumber) ends in MCU row \(my) of \(frame.mcusPerColumn)") }
      }
    }
    position = state.reader.position
  }
}

/// One scan component as the loops see it.
struct Lane {
  let dc: HuffmanView, ac: HuffmanView
  let coefficients: UnsafeMutablePointer<Int16>
  let blocksPerLine: Int, h: Int, v: Int
}

/// The entropy decoder's running state within a scan: the bit reader, the DC predictors and a
/// progressive AC scan's end-of-band run.
struct EntropyState {
  var reader: BitReader
  let scan: Scan
  var endOfBandRun = 0
  var predictors = SIMD4<Int>()
  let zigzag = UnsafePointer(naturalOrderTable)

  init(reader: BitReader, scan: Scan) { self.reader = reader; self.scan = scan }

  /// Skips to the restart marker RSTn and past it (T.81 F.1.2.3).
  mutating func restart(expected: Int) throws(JPEGError) {
    reader.reset()
    reader.position = try passRestartMarker(reader.base, end: reader.end, from: reader.position, expected: expected)
    endOfBandRun = 0
    predictors = SIMD4<Int>()
  }

  @inline(__always)
  mutating func decodeBlock(_ kind: Scan.Kind, _ block: UnsafeMutablePointer<Int16>, _ lane: Int, _ tables: Lane) throws(JPEGError) {
    switch kind {
    case .sequential:
      try decodeDC(block, lane, tables.dc, shift: 0)
      try decodeSequentialAC(block, tables.ac)
    case .dcFirst: try decodeDC(block, lane, tables.dc, shift: scan.al)
    case .dcRefine: if reader.bit() != 0 { block[0] |= Int16(truncatingIfNeeded: 1 << scan.al) }
    case .acFirst: try decodeACFirst(block, tables.ac)
    case .acRefine: try decodeACRefine(block, tables.ac)
    }
  }

  @inline(__always)
  mutating func decodeDC(_ block: UnsafeMutablePointer<Int16>, _ lane: Int, _ table: HuffmanView, shift: Int) throws(JPEGError) {
    let fast = table.fastAC[reader.peek()]
    if fast != 0 {
      // A DC code and its difference bits within the lookahead, built by the AC rule: symbol 0 (marked
      // as end-of-block there) is a zero difference here.
      reader.skip(Int(fast & 0xFF))
      if fast & HuffmanTable.endOfBlock == 0 { predictors[lane] &+= Int(fast >> 16) }
    } else {
      let size = try reader.decode(table)
      guard size <= 16 else { throw .corrupt("DC difference of \(size) bits") }
      predictors[lane] &+= reader.signed(size)
    }
    block[0] = Int16(truncatingIfNeeded: predictors[lane] << shift)
  }

  @inline(__always)
  mutating func decodeSequentialAC(_ block: UnsafeMutablePointer<Int16>, _ table: HuffmanView) throws(JPEGError) {
    var k = 1
    while k < 64 {
      // A short code with its magnitude bits inside the lookahead window: one lookup.
      let fast = table.fastAC[reader.peek()]
      if fast & HuffmanTable.endOfBlock != 0 { reader.skip(Int(fast & 0xFF)); break }
      if fast != 0 {
        k += Int((fast >> 8) & 15)
        guard k < 64 else { throw .corrupt("AC coefficient run past the end of a block") }
        reader.skip(Int(fast & 0xFF))
        block[zigzag[k]] = Int16(truncatingIfNeeded: fast >> 16)
        k += 1
        continue
      }
      let rs = try reader.decode(table)
      let run = rs >> 4, size = rs & 15
      if size != 0 {
        k += run
        guard k < 64 else { throw .corrupt("AC coefficient run past the end of a block") }
        block[zigzag[k]] = Int16(truncatingIfNeeded: reader.signed(size))
        k += 1
      } else {
        if run != 15 { break }
        k += 16
      }
    }
  }

  mutating func decodeACFirst(_ block: UnsafeMutablePointer<Int16>, _ table: HuffmanView) throws(JPEGError) {
    if endOfBandRun > 0 { endOfBandRun -= 1; return }
    var k = scan.ss
    while k <= scan.se {
      let rs = try reader.decode(table)
      let run = rs >> 4, size = rs & 15
      if size != 0 {
        k += run
        guard k <= scan.se else { throw .corrupt("AC coefficient run past the end of the band") }
        block[zigzag[k]] = Int16(truncatingIfNeeded: reader.signed(size) << scan.al)
        k += 1
      } else if run == 15 {
        k += 16
      } else {
        endOfBandRun = 1 << run
        if run > 0 { endOfBandRun += reader.bits(run) }
        endOfBandRun -= 1
        break
      }
    }
  }

  /// Successive-approximation refinement of AC coefficients (T.81 G.1.2.3): one correction bit per
  /// coefficient already nonzero, new coefficients of magnitude 1 << al placed after `run` zeros.
  mutating func decodeACRefine(_ block: UnsafeMutablePointer<Int16>, _ table: HuffmanView) throws(JPEGError) {
    let plus = 1 << scan.al, minus = -1 << scan.al
    var k = scan.ss
    @inline(__always) func refine(_ z: Int, _ reader: inout BitReader) {
      let coefficient = Int(block[z])
      if reader.bit() != 0 && coefficient & plus == 0 {
        block[z] = Int16(truncatingIfNeeded: coefficient + (coefficient >= 0 ? plus : minus))
      }
    }
    if endOfBandRun == 0 {
      while k <= scan.se {
        let rs = try reader.decode(table)
        var run = rs >> 4
        let size = rs & 15
        var value = 0
        if size != 0 {
          guard size == 1 else { throw .corrupt("refinement coefficient of \(size) bits") }
          value = reader.bit() != 0 ? plus : minus
        } else if run != 15 {
          endOfBandRun = 1 << run
          if run > 0 { endOfBandRun += reader.bits(run) }
          break
        }
        while k <= scan.se {
          let z = zigzag[k]
          if block[z] != 0 {
            refine(z, &reader)
          } else {
            if run == 0 { break }
            run -= 1
          }
          k += 1
        }
        if value != 0 {
          guard k <= scan.se else { throw .corrupt("refinement coefficient past the end of the band") }
          block[zigzag[k]] = Int16(truncatingIfNeeded: value)
        }
        k += 1
      }
    }
    if endOfBandRun > 0 {
      while k <= scan.se {
        let z = zigzag[k]
        if block[z] != 0 { refine(z, &reader) }
        k += 1
      }
      endOfBandRun -= 1
    }
  }
}

/// The position after the next marker from `position`, which must be RST`expected` (entropy-coded
/// data may leave bytes before it; stuffed FF 00 and fill bytes are passed over).
func passRestartMarker(_ base: UnsafePointer<UInt8>, end: Int, from position: Int, expected: Int) throws(JPEGError) -> Int {
  var p = position
  while p + 1 < end && !(base[p] == 0xFF && base[p + 1] != 0 && base[p + 1] != 0xFF) { p += 1 }
  guard p + 1 < end else { throw .truncated("restart marker RST\(expected) missing at the end of the data") }
  let marker = Int(base[p + 1])
  guard marker == 0xD0 + expected else {
    throw .corrupt("expected restart marker RST\(expected) at offset \(p), found FF \(hex(marker))")
  }
  return p + 2
}

/// `naturalOrder` as a pointer that lives for the process, so the hot loops index it without
/// bounds checks or lazy-global checks.
nonisolated(unsafe) let naturalOrderTable: UnsafeMutablePointer<Int> = {
  let table = UnsafeMutablePointer<Int>.allocate(capacity: 64)
  for k in 0..<64 { table[k] = naturalOrder[k] }
  return table
}()
