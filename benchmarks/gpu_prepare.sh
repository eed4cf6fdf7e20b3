#!/bin/bash
# Prepare the carried folder .whl/ (ignored by git) for benchmarks/gpu_check.py on the device
# machine: wheels of archbench's dependencies its image lacks (Python 3.12, x86-64), pinned to
# the versions of the local venv, and Fashion-MNIST (the device cannot download anything).
# Then call the device tool with carry [".whl"] and the command
#   python3 benchmarks/gpu_check.py --install .whl --out $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/main/.venv/bin/python}
mkdir -p .whl
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
# Missing from the device image (KINDS.md): Optuna and its needs, SQLAlchemy, fvcore and its.
for pkg in optuna alembic colorlog sqlalchemy mako fvcore iopath yacs termcolor; do
  spec="$pkg==$(version "$pkg")"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "$spec" \
  || python3 -m pip download -q --no-deps -d .whl "$spec"  # sdist only (fvcore, iopath)
done
# fvcore and iopath ship as source archives only: build wheels from them (pure Python).
for sdist in .whl/*.tar.gz; do
  [ -e "$sdist" ] || continue
  python3 -m pip wheel -q --no-deps -w .whl "$sdist" && rm "$sdist"
done
mkdir -p .whl/fashion-mnist
cp /usr/share/datasets/fashion-mnist/*.gz .whl/fashion-mnist/
du -sh .whl
