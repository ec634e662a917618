#!/usr/bin/env bash
# Build the C++ core with its CUDA kernels and run the CUDA tests, on a lent GPU machine
# (docs/gpu-training.md): every kernel against its CPU/numpy reference on the GPU.
#
# Runs there, in the repository root, with what the GPU image has (CMake, nvcc, pybind11,
# numpy, torch, onnxruntime, pytest): no pip, no carried files. The build goes to a
# temporary folder and the module into python/flowdec/ of that machine's copy. Logs in $OUT
# (or ./gpu_out when OUT is unset). The onnxruntime there has no CUDA provider, so the
# IO-binding test (tests/test_gpu_solver.py) skips; the kernel tests run.
set -euo pipefail

OUT=${OUT:-gpu_out}
ARCH=${ARCH:-90}   # H100/H200; "native" builds for the GPU present
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT"
BUILD=$(mktemp -d)
PY=$(command -v python3)

cmake -S . -B "$BUILD" -DFLOWDEC_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  -DPython_EXECUTABLE="$PY" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
  >"$OUT/cuda_build.log" 2>&1 || { tail -30 "$OUT/cuda_build.log"; exit 1; }
cmake --build "$BUILD" -j "$JOBS" >>"$OUT/cuda_build.log" 2>&1 \
  || { tail -30 "$OUT/cuda_build.log"; exit 1; }
cp "$BUILD"/_core*.so python/flowdec/
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true

# tests/conftest.py loads the shipped codec (pedalboard, soxr: not in the image); the CUDA
# tests need none of it
PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH} "$PY" -m pytest -q --noconftest \
  -p no:cacheprovider -rA tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.log"
