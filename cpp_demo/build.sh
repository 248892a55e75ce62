#!/usr/bin/env bash
# Build cpp_demo/ in one step: system packages (apt, when run as root), OpenVINO from the Python
# environment's `openvino` wheel, binaries in cpp_demo/build/ (edgemark_track, edgemark_smooth).
#   cpp_demo/build.sh                 # uses `python` on PATH (an activated .venv), else python3
#   PYTHON=/path/to/python cpp_demo/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
packages="libopencv-dev nlohmann-json3-dev"
status=$(dpkg-query -W -f='${db:Status-Status}\n' $packages 2>&1 || true)
if grep -qv '^installed$' <<<"$status"; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq $packages >/dev/null
    else
        echo "error: cpp_demo needs $packages; run: sudo apt-get install -y $packages" >&2
        exit 1
    fi
fi
python="${PYTHON:-$(command -v python || command -v python3)}"
openvino_dir=$("$python" -c "import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), 'cmake'))" 2>/dev/null) || {
    echo "error: $python has no 'openvino' package; pip install -e '.[openvino]' (or set PYTHON=the environment's python)" >&2
    exit 1
}
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release -DOpenVINO_DIR="$openvino_dir" >/dev/null
cmake --build "$here/build" -j"$(nproc)"
echo "built $here/build/edgemark_track and $here/build/edgemark_smooth"
