
/// Names for a model's class indices, as `amoeba predict` prints them: each label's WordNet id and
/// words. `imagenet_to_gcs.py` numbers the synsets of its sorted synsets file 1…1000 (0 is the
/// background class of the 1001-way head) and writes each record's synset beside its label; the
/// older `build_imagenet_data.py` adds the words (`image/class/text`).
public struct ClassNames: Sendable {
  public private(set) var synsets: [Int: String] = [:]
  public private(set) var words: [Int: String] = [:]

  public init() {}

  /// The built-in dataset's classes, by index.
  public init(names: [String]) {
    for (label, name) in names.enumerated() { words[label] = name }
  }

  /// From a synsets file (one WordNet id per line, label order from 1, as `imagenet_to_gcs.py`
  /// reads it) and, optionally, `imagenet_metadata.txt` ("<wnid>\t<words>" per line).
  public init(synsetsFile: String, metadataFile: String?) throws(DataError) {
    let ids = try ClassNames.lines(synsetsFile).map { String($0.drop { $0 == " " || $0 == "\t" }.prefix { $0 != " " && $0 != "\t" }) }
      .filter { !$0.isEmpty }
    guard !ids.isEmpty else { throw .io(file: synsetsFile, reason: "no synsets in it (one WordNet id per line, e.g. n01440764)") }
    for (i, id) in ids.enumerated() { synsets[i + 1] = id }
    if let metadataFile {
      var byID: [String: String] = [:]
      for line in try ClassNames.lines(metadataFile) {
        let parts = line.split(separator: "\t", maxSplits: 1)
        if parts.count == 2 { byID[String(parts[0])] = String(parts[1]) }
      }
      for (label, id) in synsets { words[label] = byID[id] }
    }
  }

  /// From the records of the shards in `directory` (validation first, then train): each label's
  /// synset and words from the first record that carries it. Stops once `classCount` labels have
  /// a synset; undecodable records are skipped.
  public init(shardsIn directory: String, classCount: Int) throws(DataError) {
    var files: [String] = []
    for split in [Split.validation, .train] { files += (try? ImageNetDataset.shards(in: directory, split: split)) ?? [] }
    guard !files.isEmpty else { throw .missingShards(directory: directory, reason: "no train-*/validation-* shards to read class names from") }
    for file in files {
      let index = try TFRecordIndex(files: [file])
      for i in 0..<index.count {
        guard let bytes = try? index.read(i), let example = try? Example(decoding: bytes),
              let label = example.int64("image/class/label") else { continue }
        let key = Int(label)
        if synsets[key] == nil, let id = example.bytes("image/class/synset") { synsets[key] = String(decoding: id, as: UTF8.self) }
        if words[key] == nil, let text = example.bytes("image/class/text") { words[key] = String(decoding: text, as: UTF8.self) }
        if synsets.count >= classCount - 1 { return }  // every label of 1…N−1 (0 is background)
      }
    }
  }

  /// "282 n02123159 tiger cat", or what is known of it.
  public func describe(_ label: Int) -> String {
    ([String(label)] + [synsets[label], words[label]].compactMap { $0 }).joined(separator: " ")
  }

  static func lines(_ path: String) throws(DataError) -> [String] {
    String(decoding: try ImageNetConverter.readFile(path), as: UTF8.self).split(whereSeparator: \.isNewline).map(String.init)
  }

}
