#!/usr/bin/env bash
# Fetches XLA's CPU compiler as a PJRT plugin (the `xla-cpu-pjrt` wheel from PyPI, 63 MB) into the
# ignored folder .pjrt/, for the tests that compile StableHLO through PJRT. Nothing is built
# against it: the trainer loads it with dlopen at run time. Without network the tests skip, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
target=.pjrt/xla_cpu_pjrt.so
if [ -s "$target" ]; then echo "fetch-pjrt-cpu: $target is here"; exit 0; fi
mkdir -p .pjrt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! python3 -m pip download --no-deps -q xla-cpu-pjrt==0.0.1 -d "$work" >/dev/null 2>&1; then
  echo "fetch-pjrt-cpu: could not download xla-cpu-pjrt from PyPI; the PJRT tests will skip"
  exit 0
fi
python3 - "$work" "$target" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/xla_cpu_pjrt-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
mv "$target.tmp" "$target"
echo "fetch-pjrt-cpu: $target ($(du -h "$target" | cut -f1))"
