#!/usr/bin/env bash
# Run HERE (where PyPI answers), before benchmarks/gpu_run.sh goes to a lent GPU machine: downloads the wheels that
# machine's image lacks into .whl/ (ignored by git; the device tool carries it with carry [".whl"]).
# The image ships torch, torchvision, transformers, huggingface_hub, safetensors, peft, numpy, pillow, ...
# (/work/.library/device/KINDS.md); it lacks diffusers and diffusers' importlib_metadata. Same diffusers as here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VERSION=$(.venv/bin/python -c "import diffusers; print(diffusers.__version__)" 2>/dev/null || echo 0.42.1)
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "diffusers==$VERSION" importlib_metadata
ls -l .whl
