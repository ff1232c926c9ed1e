#!/usr/bin/env bash
# The Quick start commands: install everything (idempotent), then run the demo or the tests, or build the docs.
#   bash tools/run.sh demo [demo options]
#   bash tools/run.sh test [pytest options]       unit and numerics tests (pytest -m 'not slow'), minutes
#   bash tools/run.sh test-all [pytest options]   everything, end-to-end runs included
#   bash tools/run.sh docs [sphinx-build options] the documentation site, strict (warnings and broken links are
#                                                 errors), every page re-read (the API reference follows the
#                                                 code), into docs/_build/html; installs the docs extra first
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command=${1:-}
case "$command" in
  demo|test|test-all|docs) shift ;;
  *) echo "usage: bash tools/run.sh demo|test|test-all|docs [options]" >&2; exit 2 ;;
esac
if [ "$command" = docs ]; then bash "$repo/tools/install.sh" --with docs; else bash "$repo/tools/install.sh"; fi
python=${VIRTUAL_ENV:-$repo/.venv}/bin/python
cd "$repo"
case "$command" in
  demo) exec "$python" tools/demo.py "$@" ;;
  test) exec "$python" -m pytest -m 'not slow' "$@" ;;
  test-all) exec "$python" -m pytest "$@" ;;
  docs) exec "$python" -m sphinx -E -W --keep-going -n -b html "$@" docs docs/_build/html ;;
esac
