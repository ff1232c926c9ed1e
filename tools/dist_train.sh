#!/usr/bin/env bash
# Multi-process training with torchrun:  bash tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py options]
# One process per GPU; on a machine without GPUs the processes train on the CPU (gloo).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as for torchrun (on one machine without PORT,
# torchrun takes a free port). PYTHON picks the interpreter (default: the repository's .venv when it exists).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash tools/dist_train.sh CONFIG NUM_PROCESSES [options]" >&2
  exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
default_python=python
[ -x "$repo/.venv/bin/python" ] && default_python=$repo/.venv/bin/python
CONFIG=$1
NPROC=$2
shift 2
if [ "${NNODES:-1}" = 1 ] && [ -z "${PORT:-}" ]; then
  # One machine: torchrun binds a free port itself, so runs side by side never race for one.
  rendezvous=(--standalone)
else
  rendezvous=(--nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}"
              --master_port="${PORT:-29500}")
fi
exec "${PYTHON:-$default_python}" -m torch.distributed.run "${rendezvous[@]}" --nproc_per_node="$NPROC" \
  "$repo/tools/train.py" "$CONFIG" --launcher pytorch "$@"
