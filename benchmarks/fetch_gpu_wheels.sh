#!/usr/bin/env bash
# Download the wheels benchmarks/run_gpu.sh installs on the GPU machine (which cannot reach a
# registry) into .whl/ at the repository root: CPython 3.12, manylinux x86_64, no dependencies
# (benchmarks/gpu_wheels.txt names every one). Run from the repository root, on a machine with
# network access, before the device call; .whl/ is git-ignored and travels with `carry: [".whl"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
grep -v '^#' benchmarks/gpu_wheels.txt | grep -v '^$' > /tmp/rtmbench-gpu-wheels.txt
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl -r /tmp/rtmbench-gpu-wheels.txt
ls -la .whl
du -sh .whl
