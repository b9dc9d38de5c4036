#!/usr/bin/env bash
# Builds `lade` with the `cuda` feature on a machine without a GPU or CUDA toolkit:
# nvcc 13.0.x and headers come from PyPI wheels into .cuda/, link stubs are generated from
# cudarc's own bindings, and the build goes to target-cuda/ (separate from the CPU build).
# Output: target-cuda/release/lade (needs libcuda at run time, i.e. a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${CUDA_PREFIX:-$PWD/.cuda}
C=$PREFIX/nvidia/cu13
if [ ! -x "$C/bin/nvcc" ]; then
  echo "installing nvcc 13.0 wheels into $PREFIX ..." >&2
  python3 -m pip install -q --no-deps --target "$PREFIX" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
    nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85
fi
# nvcc expects lib64/ and the nvvm tree next to bin/.
[ -e "$C/lib64" ] || ln -s lib "$C/lib64"
cargo fetch --locked >/dev/null
R=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10/src | head -n1)
S=$PREFIX/stubs
mkdir -p "$S"
mk() { # library-dir-in-cudarc  stub-name  soname
  grep -oE '^\s*pub unsafe fn [A-Za-z0-9_]+\(' "$R/$1/sys/mod.rs" |
    sed -E 's/.*pub unsafe fn ([A-Za-z0-9_]+)\(/int \1(void){return 999;}/' | sort -u > "$S/$2.c"
  gcc -shared -fPIC -o "$S/lib$2.so" -Wl,-soname,"$3" "$S/$2.c"
}
[ -f "$S/libcuda.so" ] || {
  mk driver cuda libcuda.so.1; mk cublas cublas libcublas.so.13; mk cublaslt cublasLt libcublasLt.so.13
  mk curand curand libcurand.so.10; mk nvrtc nvrtc libnvrtc.so.13
}
ln -sf "$C/lib/libcudart.so.13" "$S/libcudart.so"
export CUDA_HOME=$C CUDA_PATH=$C PATH=$C/bin:$PATH CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export RUSTFLAGS="-L native=$S" CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-cuda}
cargo build --release --locked --features cuda "$@"
echo "built $CARGO_TARGET_DIR/release/lade" >&2
