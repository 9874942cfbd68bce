/// Lossless JPEG (T.81 Annex H, SOF3): no DCT — each sample is predicted from its left (Ra),
/// upper (Rb) and upper-left (Rc) neighbours by one of seven predictors (the scan's Ss), and the
/// Huffman-coded difference (a DC-style size category, 16 meaning 32768) added modulo 2^16. As
/// libjpeg-turbo 3 decodes it: the first row of the scan and of each restart interval predicts
/// from the left (its first sample from 2^(P−Pt−1)), the first column of every other row from
/// above, and a sample is its reconstruction shifted up by the point transform (Pt, the scan's
/// Al) and cut to 8 bits. Restart intervals must be whole rows, as libjpeg-turbo requires.
/// (TensorFlow 2.21's libjpeg-turbo predates 3.0 and refuses these files; `ImageNetConverter`
/// re-encodes them so that the reference pipeline can read its shards.)
extension Decoder {
  mutating func decodeLosslessScan(_ scan: Scan, frame: Frame) throws(JPEGError) {
    let predictor = scan.ss, pointTransform = scan.al
    guard (1...7).contains(predictor), scan.se == 0, scan.ah == 0, pointTransform < frame.precision else {
      throw .corrupt("lossless scan Ss=\(scan.ss) Se=\(scan.se) Ah=\(scan.ah) Al=\(scan.al) (predictor 1-7, Se and Ah 0, Al below the precision)")
    }
    let width = frame.width, height = frame.height
    guard restartInterval % width == 0 else {
      throw .unsupported("lossless restart interval of \(restartInterval) samples, not whole rows of \(width) (libjpeg-turbo refuses it too)")
    }
    var tables: [HuffmanView] = []
    var planes: [UnsafeMutablePointer<UInt16>] = []
    for c in scan.components {
      guard let table = dcTables[c.dcTable] else { throw .corrupt("component \(c.id) uses undefined Huffman table \(c.dcTable)") }
      tables.append(table.view)
      planes.append(try c.losslessSamples())
      c.pointTransform = pointTransform
    }
    let initial = 1 << (frame.precision - pointTransform - 1)
    let rowsPerInterval = restartInterval / width
    var reader = BitReader(base: base, end: count, position: position)
    let scanNumber = scans + 1
    var firstRow = 0
    for y in 0..<height {
      if rowsPerInterval > 0 && y > 0 && y % rowsPerInterval == 0 {
        if reader.overran { throw .truncated("scan \(scanNumber) ends before row \(y) of \(height)") }
        reader.reset()
        reader.position = try passRestartMarker(base, end: count, from: reader.position, expected: (y / rowsPerInterval - 1) & 7)
        firstRow = y
      }
      for x in 0..<width {
        for i in 0..<planes.count {
          let size = try reader.decode(tables[i])
          let difference: Int
          switch size {
          case 0...15: difference = reader.signed(size)
          case 16: difference = 32768
          default: throw .corrupt("lossless difference of size \(size) in scan \(scanNumber) (at most 16)")
          }
          let row = planes[i] + y * width
          let prediction: Int
          if y == firstRow {
            prediction = x == 0 ? initial : Int(row[x - 1])
          } else {
            let up = row - width
            if x == 0 {
              prediction = Int(up[0])
            } else {
              let ra = Int(row[x - 1]), rb = Int(up[x]), rc = Int(up[x - 1])
              switch predictor {
              case 1: prediction = ra
              case 2: prediction = rb
              case 3: prediction = rc
              case 4: prediction = ra + rb - rc
              case 5: prediction = ra + ((rb - rc) >> 1)
              case 6: prediction = rb + ((ra - rc) >> 1)
              default: prediction = (ra + rb) >> 1
              }
            }
          }
          row[x] = UInt16(truncatingIfNeeded: difference + prediction)
        }
      }
      if reader.overran { throw .truncated("scan \(scanNumber) ends in row \(y) of \(height)") }
    }
    position = reader.position
  }
}

extension Plane {
  /// A lossless component's samples as libjpeg-turbo outputs them: shifted up by the point
  /// transform, cut to 8 bits, never upsampled (every component is full size).
  convenience init(lossless c: Component) throws(JPEGError) {
    let source = try c.losslessSamples()
    let samples = UnsafeMutablePointer<UInt8>.allocate(capacity: c.width * c.height)
    for k in 0..<(c.width * c.height) { samples[k] = UInt8(truncatingIfNeeded: Int(source[k]) << c.pointTransform) }
    self.init(samples: samples, stride: c.width, width: c.width, height: c.height)
  }
}
