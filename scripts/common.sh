# Shared by scripts/demo.sh and scripts/test.sh: install the Debian packages
# refit needs (when missing) and build into build/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(cmake ninja-build g++ pkg-config nlohmann-json3-dev libcli11-dev
  libfmt-dev libspdlog-dev libxxhash-dev libgtest-dev libgmock-dev
  libopenmpi-dev openmpi-bin
  python3-dev pybind11-dev python3-numpy python3-torch python3-mpi4py
  python3-pytest python3-matplotlib clang libclang-rt-dev)

install_missing() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

build() {
  cmake -S "$ROOT" -B "$ROOT/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$ROOT/build" -j "$(nproc)"
}
