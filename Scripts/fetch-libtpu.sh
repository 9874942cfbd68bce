#!/usr/bin/env bash
# Fetches libtpu (Google's TPU runtime as a PJRT plugin, the `libtpu` wheel from PyPI, 137 MB) into
# the ignored folder .pjrt/, for ahead-of-time compilation of the train step for TPU topologies on a
# host without a TPU (`amoeba xla compile --platform tpu`). libtpu's licence allows installing it,
# not redistributing it: it is downloaded, never committed. Without network its tests skip, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${LIBTPU_VERSION:-0.0.52}
target=.pjrt/libtpu.so
if [ -s "$target" ]; then echo "fetch-libtpu: $target is here"; exit 0; fi
mkdir -p .pjrt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! python3 -m pip download --no-deps -q "libtpu==$version" -d "$work" >/dev/null 2>&1; then
  echo "fetch-libtpu: could not download libtpu $version from PyPI; the TPU compile tests will skip"
  exit 0
fi
python3 - "$work" "$target" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/libtpu-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("libtpu/libtpu.so") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
mv "$target.tmp" "$target"
echo "fetch-libtpu: $target ($(du -h "$target" | cut -f1), libtpu $version)"
