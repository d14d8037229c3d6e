#!/usr/bin/env bash
# Makes the Python environment the ONNX export test runs its consumer in: ONNX Runtime, onnx (for
# onnx.checker) and numpy, from PyPI, in a virtual environment (default build/onnx-venv). The test
# (tests/cpu/tools_onnx_export_test.cpp) skips, naming this script, when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-build/onnx-venv}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import onnxruntime, onnx, numpy" 2>/dev/null; then
  echo "onnx_venv: $venv ready"
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check onnxruntime onnx numpy
"$venv/bin/python" -c "import onnxruntime, onnx; print('onnx_venv:', '$venv', 'onnxruntime', onnxruntime.__version__, 'onnx', onnx.__version__)"
