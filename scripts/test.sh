#!/usr/bin/env bash
# Set up a virtualenv with the test dependencies and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache  # dependencies point one way (pyproject.toml)
exec .venv/bin/python -m pytest -q "$@"
