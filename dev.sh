#!/usr/bin/env bash
# One entry point that sets itself up: creates .venv (Python >= 3.11), installs the project with
# its dev extra when pyproject.toml changed, then runs the asked-for job.
#   ./dev.sh bench [args]   quick benchmark matrix: caches on/off on SQLite + in-memory caches
#                           (plus one PostgreSQL + Redis job when those servers answer)
#   ./dev.sh locust [PROFILE] [locust args]  Locust's web UI (127.0.0.1:8089) against a fresh local forge-ref
#                           and mock, tenants seeded (python -m benchmarks.interactive --help)
#   ./dev.sh report [args]  RESULTS.md and docs/figures/*.png from results/*.json
#   ./dev.sh notebooks [args]  JupyterLab on notebooks/ at 127.0.0.1 (installs the notebooks extra once;
#                           builds each notebooks/0N_*.ipynb from its source notebooks/0N_*.py)
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

# pip's own chatter (setuptools' "same name as your package" banner, index warnings) is kept in a
# log and shown only when an install fails.
install() {
  local log=.venv/pip.log
  if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "dev.sh: pip install $* failed (log above, also in $log)" >&2
    exit 1
  fi
}

if [ ! -x .venv/bin/python ]; then
  echo "dev.sh: creating .venv and installing forge-ref (a minute or two, once)" >&2
  "$PY" -m venv .venv
fi
STAMP=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$STAMP" ]; then
  install --upgrade pip
  install -e '.[dev]'
  rm -f .venv/.installed-*; touch "$STAMP"
fi
export PATH="$PWD/.venv/bin:$PATH"

cmd="${1:-test}"; shift || true
case "$cmd" in
  bench) exec python -m benchmarks run --quick "$@" ;;
  report) exec python -m benchmarks report "$@" ;;
  locust) exec python -m benchmarks.interactive "$@" ;;
  notebooks)
    NB_STAMP=.venv/.notebooks-$(sha256sum pyproject.toml | cut -c1-16)
    if [ ! -f "$NB_STAMP" ]; then
      install -e '.[notebooks]'
      rm -f .venv/.notebooks-*; touch "$NB_STAMP"
    fi
    # Creates a missing .ipynb; of a source and its notebook, the newer one updates the other (outputs kept).
    jupytext --sync --set-kernel python3 notebooks/[0-9]*.py >&2
    exec jupyter lab --ip 127.0.0.1 notebooks/ "$@" ;;
  test)  exec python -m pytest "$@" ;;
  *)     exec "$cmd" "$@" ;;
esac
