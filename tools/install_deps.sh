#!/usr/bin/env bash
# Installs convnet's build and test dependencies from Debian packages (Debian 12 or newer).
# Used by the README's commands and by CI. The CUDA toolkit (with cuDNN) is optional and not
# installed here: when /usr/local/cuda (or CUDAToolkit_ROOT / CUDNN_ROOT) has one, the GPU
# backends are built too.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ccache xz-utils ca-certificates curl
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
  libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libopenblas-dev libjpeg-dev libpng-dev
  libopenmpi-dev openmpi-bin
  libonnx-dev libprotobuf-dev python3-venv
  clang libclang-rt-dev llvm lld  # tools/sanitize.sh and tools/fuzz.sh: clang's sanitizers, libFuzzer, llvm-symbolizer
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install_deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
