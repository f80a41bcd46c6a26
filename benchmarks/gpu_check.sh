#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) against the PyTorch this machine already has.
#   benchmarks/gpu_check.sh [--steps N] [--data-dir DIR] [--out DIR]   # about 3-8 minutes
#   benchmarks/gpu_check.sh --dry-run                                   # CPU, under a minute
# The package is installed with --no-deps --no-build-isolation, so pip neither replaces torch
# (pyproject asks for a range, not a pin) nor needs the network; the torch version is checked
# before and after. GPU_CHECK_INSTALL=0 skips the install and runs from src/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

before=$("$PY" -c 'import torch; print(torch.__version__)')
echo "torch $before, CUDA available: $("$PY" -c 'import torch; print(torch.cuda.is_available())')"
if [ "${GPU_CHECK_INSTALL:-1}" = 1 ]; then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e .
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
after=$("$PY" -c 'import torch; print(torch.__version__)')
if [ "$before" != "$after" ]; then
  echo "gpu_check: installing fashionlab changed torch ($before -> $after)" >&2
  exit 1
fi
missing=$("$PY" -c '
import importlib.util
need = ["numpy", "scipy", "sklearn", "matplotlib", "safetensors", "yaml", "pydantic", "tqdm", "jinja2", "PIL"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))')
if [ -n "$missing" ]; then
  echo "gpu_check: missing packages: $missing (pip install them, then run again)" >&2
  exit 1
fi
exec "$PY" benchmarks/gpu_check.py "$@"
