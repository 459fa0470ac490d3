#!/usr/bin/env bash
# On a lent GPU machine (device tool, carry [".whl"] after `bash benchmarks/gpu_wheels.sh` and the captum wheel):
# 1. the analysis on CUDA with a concept-model check (benchmarks/analysis_device_smoke.py: tiny SD, a timm CNN, a
#    tiny CLIP folder as --concepts; the concept model runs in the generator's half precision);
# 2. the world's concept model's zero-shot accuracy per attribute on 600 held-out renders, float32 against the
#    GPU default float16 (probe.world.training.concepts.evaluate_concepts).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/gpu_env.sh
source benchmarks/gpu_env.sh
"$PY" benchmarks/analysis_device_smoke.py --device "${DEVICE:-cuda}" 2>&1 | grep -v "it/s]" | tee "$OUT/analysis_device_smoke.txt"
"$PY" - "${DEVICE:-cuda}" <<'PY' 2>&1 | tee "$OUT/world_concepts_gpu.md"
import json, sys
from probe.world.training.concepts import evaluate_concepts, results_table
folder = "probe/world/assets/concepts"  # the domain's entry point needs an installed probe; the folder does not
for dtype in ("float32", "float16") if sys.argv[1].startswith("cuda") else ("float32",):
    r = evaluate_concepts(folder, device=sys.argv[1], dtype=dtype)
    print(f"### {r['device']}, {r['dtype']}")
    print(results_table(r))
    print(json.dumps(r["accuracy"]))
PY
