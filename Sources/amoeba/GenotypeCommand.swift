import CLI
import Foundation
import Model

/// `amoeba genotype [--cell_name NAME|FILE.json]`: the genotype as the JSON a file holds — a
/// built-in one to start a file from, or a file checked (what is wrong is named, exit 2).
struct GenotypeCommand {
  var genotype: Genotype

  init(flags: Flags) throws {
    var flags = flags
    genotype = try flags.networkConfig().genotype
    try flags.finish()
  }

  func run() throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(genotype), as: UTF8.self))
  }
}
