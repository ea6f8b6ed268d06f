#!/usr/bin/env bash
# One entry point that sets itself up: creates .venv (Python >= 3.11), installs the project with
# its dev extra when pyproject.toml changed, then runs the asked-for job.
#   ./dev.sh bench [args]   quick benchmark matrix: caches on/off on SQLite + in-memory caches
#                           (plus one PostgreSQL + Redis job when those servers answer)
#   ./dev.sh test  [args]   the test suite (pytest)
#   ./dev.sh <cmd> [args]   any command inside the virtualenv
set -euo pipefail
cd "$(dirname "$0")"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$candidate"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "dev.sh: Python >= 3.11 is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$STAMP" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e '.[dev]' >&2
  rm -f .venv/.installed-*; touch "$STAMP"
fi
export PATH="$PWD/.venv/bin:$PATH"

cmd="${1:-test}"; shift || true
case "$cmd" in
  bench) exec python -m benchmarks run --quick "$@" ;;
  test)  exec python -m pytest "$@" ;;
  *)     exec "$cmd" "$@" ;;
esac
