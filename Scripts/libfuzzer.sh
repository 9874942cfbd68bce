#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer over the targets of `amoeba fuzz`:
#   Scripts/libfuzzer.sh TARGET [libFuzzer flags, e.g. -runs=1000000 -max_total_time=60]
# Builds the Fuzzing library and its dependencies with `-sanitize=fuzzer` in a separate scratch path
# (.build-libfuzzer), links Scripts/fuzz/LibFuzzerEntry.swift against them, seeds a corpus with the
# target's valid inputs and runs. A crash leaves crash-* files here, which libFuzzer replays by name.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: Scripts/libfuzzer.sh TARGET [libFuzzer flags]  (the target names of amoeba fuzz)}
shift
scratch=${AMOEBA_LIBFUZZER_BUILD:-.build-libfuzzer}
swift build -c release --target Fuzzing --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer >/dev/null
objects=()
for module in Tensor Graph Model Checksums Collective Train JPEG Data Telemetry CLI Cluster Fuzzing; do
  objects+=("$scratch"/release/"$module".build/*.o)
done
swiftc -O -sanitize=fuzzer -parse-as-library Scripts/fuzz/LibFuzzerEntry.swift -I "$scratch/release/Modules" \
  "${objects[@]}" -o "$scratch/amoeba-libfuzzer"
corpus="$scratch/corpus-$target"
mkdir -p "$corpus"
AMOEBA_FUZZ_TARGET="$target" AMOEBA_FUZZ_CORPUS="$corpus" "$scratch/amoeba-libfuzzer" "$corpus" "$@"
