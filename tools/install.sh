#!/usr/bin/env bash
# Installs swin_backbones and everything it needs into a virtual environment.
#
# The environment is $VIRTUAL_ENV when one is active, otherwise .venv in the repository root.
# Idempotent: each step checks what is already there first, so a second run takes seconds.
#   * torch 2.13.0 only when the environment has no torch (an installed torch, e.g. a CUDA build, is kept);
#   * mmcv 2.1.0 with compiled ops from ../shared/wheels when that folder exists, built from source otherwise;
#   * mmengine 0.10.x, mmdet 3.3.0, mmsegmentation 1.2.2, test tools (mmpretrain 1.2.0 without its
#     dependencies, a SwinV2 reference), and this package in editable mode.
#
#   bash tools/install.sh [--with docs] [--with deploy]
#
# --with docs adds the docs extra (Sphinx, MyST, the theme): bash tools/run.sh docs and CI, which builds the
# documentation in the test suite, use it. --with deploy adds the deploy extra (onnx, onnxruntime, aenum) and
# mmdeploy 1.3.1 without its declared dependencies: its metadata pins protobuf<=3.20.2, which would take onnx
# back to 1.17.0 and protobuf to 3.20.2, and lists grpcio, matplotlib and multiprocess, which its onnxruntime
# path never imports.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VIRTUAL_ENV:-$repo/.venv}
wheels=$repo/../shared/wheels

log() { printf '[install] %s\n' "$*"; }

extras=det,seg,test
ready='import torch, mmengine, mmcv.ops, mmdet, mmseg, swin_backbones'
with_deploy=0
usage() { echo "usage: bash tools/install.sh [--with docs] [--with deploy]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ "$1" = --with ] || usage
  case "${2:-}" in
    docs) extras+=,docs; ready+=', sphinx, myst_parser, furo' ;;
    deploy) extras+=,deploy; ready+=', mmdeploy, onnxruntime, aenum'; with_deploy=1 ;;
    *) usage ;;
  esac
  shift 2
done

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment at $venv"
  python3 -m venv "$venv"
fi
py=$venv/bin/python
pip=("$py" -m pip --disable-pip-version-check --no-input -q)

has() { "$py" -c "$1" >/dev/null 2>&1; }

stamp=$venv/.swin_backbones_installed
if [ -f "$stamp" ] && [ "$stamp" -nt "$repo/setup.cfg" ] && [ "$stamp" -nt "$0" ] \
   && has "$ready"; then
  log "environment at $venv is up to date"
  exit 0
fi

if ! has 'import torch'; then
  log "installing torch 2.13.0"
  "${pip[@]}" install torch==2.13.0 "numpy<2"
fi
torch_version=$("$py" -c 'import torch; print(torch.__version__)')
# Every later install names this exact torch so that pip can never resolve a different build.
torch_pin=torch==$torch_version

# mmengine resolves mmdet::/mmseg:: config paths with pkg_resources, which setuptools 81 removed.
"${pip[@]}" install "$torch_pin" wheel "numpy<2" "setuptools>=77,<81" \
  "mmengine>=0.10.0,<0.11" opencv-python-headless addict packaging Pillow pyyaml yapf

if ! has 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"'; then
  if [ -d "$wheels" ] && ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    log "installing mmcv 2.1.0 from $wheels"
    "${pip[@]}" install --no-deps --find-links "$wheels" mmcv==2.1.0
  else
    log "building mmcv 2.1.0 with ops from source (about 20-40 minutes on 2 cores)"
    # mmcv 2.1.0's setup.py needs setuptools < 70 while torch needs a newer one: build with the old one,
    # then put the new one back before installing the built wheel.
    build_dir=$venv/mmcv-build
    mkdir -p "$build_dir"
    "${pip[@]}" install "setuptools<70" 2>/dev/null
    MMCV_WITH_OPS=1 FORCE_CUDA=0 "${pip[@]}" wheel --no-deps --no-build-isolation -w "$build_dir" mmcv==2.1.0
    "${pip[@]}" install "setuptools>=77,<81" "$torch_pin"
    "${pip[@]}" install --no-deps "$build_dir"/mmcv-2.1.0-*.whl
  fi
fi

log "installing mmdet, mmsegmentation, test tools and swin_backbones (editable; extras $extras)"
"${pip[@]}" install --no-build-isolation -e "$repo[$extras]" "$torch_pin" "numpy<2" "setuptools>=77,<81"
if [ "$with_deploy" = 1 ]; then
  log "installing mmdeploy 1.3.1 (without its declared dependencies)"
  "${pip[@]}" install --no-deps mmdeploy==1.3.1
fi
# mmpretrain's SwinTransformerV2 is a reference in the tests only: its backbone file needs nothing beyond
# mmcv and mmengine (tests/test_swinv2.py imports it without mmpretrain's package __init__), so none of
# mmpretrain's own dependencies are installed.
"${pip[@]}" install --no-deps mmpretrain==1.2.0

has "$ready" || {
  log "installation finished but the packages do not import"; exit 1; }
touch "$stamp"
log "ready: $venv"
