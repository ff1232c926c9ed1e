#!/usr/bin/env bash
# The Quick start commands: install everything (idempotent), then run the demo or the tests.
#   bash tools/run.sh demo [demo options]
#   bash tools/run.sh test [pytest options]       unit and numerics tests (pytest -m 'not slow'), minutes
#   bash tools/run.sh test-all [pytest options]   everything, end-to-end runs included
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command=${1:-}
case "$command" in
  demo|test|test-all) shift ;;
  *) echo "usage: bash tools/run.sh demo|test|test-all [options]" >&2; exit 2 ;;
esac
bash "$repo/tools/install.sh"
python=${VIRTUAL_ENV:-$repo/.venv}/bin/python
cd "$repo"
case "$command" in
  demo) exec "$python" tools/demo.py "$@" ;;
  test) exec "$python" -m pytest -m 'not slow' "$@" ;;
  test-all) exec "$python" -m pytest "$@" ;;
esac
