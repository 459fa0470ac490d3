#!/usr/bin/env bash
# Every validity figure for one classifier set (benchmarks/finding_validity.py SETS), at the code checked out:
# train and audit at the demo's settings and score them, reanalyse each classifier at `probe audit`'s defaults,
# confirm on 10,000 validation scenes, and measure discovery. Each step resumes from its cache.
# Usage: bash benchmarks/replicate_set.sh fresh17     (about an hour on 2 CPU cores)
set -uo pipefail
cd "$(dirname "$0")/.."
SET=${1:?name a set of benchmarks/finding_validity.py, e.g. fresh17}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONUNBUFFERED=1
P=.venv/bin/python
echo "start $(date -u +%T) $(git rev-parse --short HEAD) $SET"
$P benchmarks/finding_validity.py all --set "$SET" || echo "all failed rc=$?"
for r in benchmarks/.cache/validity/runs/"$SET"-*; do
  $P benchmarks/finding_validity.py reanalyse --run "$r" --checker oracles --infidelity 0 --audit-defaults \
    || echo "reanalyse $r failed"
done
$P benchmarks/finding_validity.py confirm --set "$SET" --audit-defaults --n-val 10000 || echo "confirm failed"
$P benchmarks/discovery_recall.py --set "$SET" --threads 2 --audit-defaults \
  --json "benchmarks/results/discovery_recall-$SET-oracles-auditdefaults-held.json" || echo "discovery failed"
echo "end $(date -u +%T)"
