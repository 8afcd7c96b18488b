#!/usr/bin/env bash
# Set up a virtualenv, install mlrm, and run the iris example on the embedded default
# (in-process bus, local volume/ folder): train, register, then batch-predict.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
.venv/bin/mlrm run configs/iris/train.yaml
.venv/bin/mlrm run configs/iris/predict.yaml
echo
echo "Predictions are in volume/predictions/iris/. Next: .venv/bin/mlrm runs, .venv/bin/mlrm models list"
