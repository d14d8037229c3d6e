#!/usr/bin/env bash
# Configures and builds convnet (Release) into build/. Extra arguments go to cmake's configure
# step, e.g. tools/build.sh -DCMAKE_CUDA_ARCHITECTURES=90.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$(nproc)"
