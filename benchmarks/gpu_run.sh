#!/usr/bin/env bash
# The one script to run on a lent GPU machine: installs the wheels carried in .whl/ (fetch them here first with
# `bash benchmarks/gpu_wheels.sh`), records the card and library versions, runs benchmarks/gpu_step.py and writes
# the table (gpu_step.md), its JSON and environment.txt to $OUT (default benchmarks/.cache/gpu).
#
# Device tool, from the repo root:  run(command="bash benchmarks/gpu_run.sh", carry=[".whl"], timeout_s=600)
# Every row takes about 5 min on an H100/H200 (the --compile row alone ~3 min of compiling). Fewer rows:
#   ROWS=default,unchunked,max-batch-1,max-batch-2 bash benchmarks/gpu_run.sh
# More gpu_step.py options through GPU_STEP_ARGS, e.g. GPU_STEP_ARGS="--family sd2 --classifier vit_b_16".
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/gpu_env.sh
source benchmarks/gpu_env.sh
if [[ " ${GPU_STEP_ARGS:-} " != *" --tiny "* ]] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device here: run \`python benchmarks/gpu_step.py --tiny\` on a CPU instead" >&2
  exit 2
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"
# shellcheck disable=SC2086
"$PY" benchmarks/gpu_step.py ${ROWS:+--rows "$ROWS"} --json "$OUT/gpu_step.json" ${GPU_STEP_ARGS:-} 2>&1 | tee "$OUT/gpu_step.md"
exit "${PIPESTATUS[0]}"
