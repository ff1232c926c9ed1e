#!/usr/bin/env bash
# The GPU check (tools/gpu_check.py) on a machine that has torch but not mmengine, mmcv or mmdet, and no
# package index: the wheels fetched beforehand into .gpu_wheels/ are installed into a private folder first.
#   bash tools/gpu_check.sh --fetch                       # where PyPI is reachable: download the wheels
#   bash tools/gpu_check.sh --out DIR [gpu_check.py options]   # anywhere, e.g. --device cpu --quick
# Where mmengine already imports (the project's environment), nothing is installed. PYTHON chooses the
# interpreter (default: python3).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wheels=$repo/.gpu_wheels
python=${PYTHON:-python3}

if [ "${1:-}" = --fetch ]; then
  # Pure-Python wheels only (the GPU machine's Python is 3.12): mmengine and what it imports that the GPU
  # machine lacks (addict, termcolor, yapf and yapf's platformdirs), mmdet, and mmcv-lite (mmcv 2.1.0
  # without compiled ops, enough for mmdet's Swin loaded from its source file). About 4 MB.
  rm -rf "$wheels"
  "$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d "$wheels" \
    mmengine==0.10.7 addict==2.4.0 termcolor==3.3.0 yapf==0.43.0 platformdirs==4.14.9 \
    mmdet==3.3.0 mmcv-lite==2.1.0
  exit 0
fi

if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "gpu_check: $python has no torch (set PYTHON to an interpreter that has it)" >&2
  exit 2
fi
site=
if ! "$python" -c 'import mmengine' 2>/dev/null; then
  if ! compgen -G "$wheels/*.whl" >/dev/null; then
    echo "gpu_check: mmengine is not installed and $wheels has no wheels (run: bash tools/gpu_check.sh --fetch)" >&2
    exit 2
  fi
  site=$(mktemp -d /tmp/gpu_check_site.XXXXXX)
  trap 'rm -rf "$site"' EXIT
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$python" "$repo/tools/gpu_check.py" "$@"
