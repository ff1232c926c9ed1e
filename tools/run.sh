#!/usr/bin/env bash
# The two Quick start commands: install everything (idempotent), then run the demo or the tests.
#   bash tools/run.sh demo [demo options]
#   bash tools/run.sh test [pytest options]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command=${1:-}
case "$command" in
  demo|test) shift ;;
  *) echo "usage: bash tools/run.sh demo|test [options]" >&2; exit 2 ;;
esac
bash "$repo/tools/install.sh"
python=${VIRTUAL_ENV:-$repo/.venv}/bin/python
cd "$repo"
if [ "$command" = demo ]; then
  exec "$python" tools/demo.py "$@"
fi
exec "$python" -m pytest "$@"
