#!/usr/bin/env bash
# The long property-based run of the control plane's REST API (schemathesis from its OpenAPI document):
# no 5xx, every response as documented. CI runs the same test with a few examples per operation.
#   bash scripts/fuzz-api.sh [EXAMPLES]      (default 300 per operation)
set -euo pipefail
cd "$(dirname "$0")/.."
MLRM_FUZZ_EXAMPLES="${1:-300}" exec .venv/bin/python -m pytest -q tests/orchestrator/api/test_schemathesis.py
