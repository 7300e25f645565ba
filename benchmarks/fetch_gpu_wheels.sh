#!/usr/bin/env bash
# Download the wheels benchmarks/gpu_check.py needs on a GPU machine with no network into .whl/
# (Python 3.12, manylinux x86_64), beside the machine's own NumPy, SciPy, pandas, matplotlib and JAX.
# Run from the repository root, where pip reaches PyPI:  bash benchmarks/fetch_gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl -r benchmarks/gpu_wheels.txt
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
