#!/usr/bin/env bash
# A CUDA 13.0 toolkit for building `--features cuda` on a machine without one (no GPU
# needed to build): NVIDIA's own PyPI wheels (nvcc, nvvm, headers, cuBLAS, cuRAND, NVRTC),
# unpacked into $OSTEO_CUDA_DIR (default ~/.cache/osteoscreen-cuda), plus a link-time stub
# of libcuda.so.1 (the driver library, which only a GPU machine's driver provides: the real
# one is loaded at run time). Prints the environment to build with; use it as
#   toolkit=$(scripts/cuda-toolkit.sh) && eval "$toolkit" && cargo build --release --features cuda
# (not `eval "$(...)"`, which would hide this script's failure). At run time the binary
# needs the driver (libcuda.so.1) and libcublas/libcublasLt/libcudart.so.13 and
# libcurand.so.10 on the library path (PyTorch cu13 wheels carry them).
# Where a CUDA toolkit is installed (nvcc on PATH), build with it instead.
set -euo pipefail
root="${OSTEO_CUDA_DIR:-$HOME/.cache/osteoscreen-cuda}"
cuda="$root/nvidia/cu13"
if [ ! -x "$cuda/bin/nvcc" ] || [ ! -e "$cuda/lib/stubs/libcuda.so" ]; then
    mkdir -p "$root/wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 \
        --platform manylinux2010_x86_64 -d "$root/wheels" \
        'nvidia-cuda-nvcc==13.0.*' 'nvidia-nvvm==13.0.*' 'nvidia-cuda-crt==13.0.*' \
        'nvidia-cuda-runtime==13.0.*' 'nvidia-cuda-cccl==13.0.*' 'nvidia-cuda-nvrtc==13.0.*' \
        'nvidia-cublas==13.0.*' 'nvidia-curand==10.4.*' >&2
    for w in "$root"/wheels/*.whl; do
        python3 -m zipfile -e "$w" "$root" >&2
    done
    chmod +x "$cuda"/bin/* "$cuda"/nvvm/bin/* 2>/dev/null || true
    # Unversioned names for the linker (-lcublas ...), as a toolkit's lib64 has them.
    for l in cublas cublasLt cudart nvrtc; do ln -sf "lib$l.so.13" "$cuda/lib/lib$l.so"; done
    ln -sf libcurand.so.10 "$cuda/lib/libcurand.so"
    # The driver API stub: every cu* entry point cudarc declares, as empty functions under
    # the driver's soname, so the binary records libcuda.so.1 and the driver's own library
    # answers at run time.
    mkdir -p "$cuda/lib/stubs"
    # The cudarc version Cargo.lock pins (run from the repository root).
    version=$(awk '/^name = "cudarc"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock 2>/dev/null || true)
    sys=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path "*/cudarc-${version:-*}/src/driver/sys/mod.rs" 2>/dev/null | head -1 || true)
    if [ -z "$sys" ]; then
        echo "cudarc's sources are not in ~/.cargo/registry: run 'cargo fetch' first" >&2
        exit 1
    fi
    grep -oE 'pub (unsafe )?fn cu[A-Za-z0-9_]+' "$sys" | awk '{print $NF}' | sort -u \
        | sed 's/.*/void &(void) {}/' >"$root/libcuda-stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$root/libcuda-stub.c"
fi
echo "export CUDA_HOME='$cuda'"
echo "export PATH='$cuda/bin':\"\$PATH\""
echo "export LIBRARY_PATH='$cuda/lib:$cuda/lib/stubs'\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
# candle-kernels compiles its PTX for this compute capability (no GPU here to ask):
# 90 is Hopper (H100/H200); set CUDA_COMPUTE_CAP for another card before running this.
echo "export CUDA_COMPUTE_CAP='${CUDA_COMPUTE_CAP:-90}'"
