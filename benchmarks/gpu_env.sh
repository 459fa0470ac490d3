# Sourced by the scripts run on a lent GPU machine (benchmarks/gpu_run.sh, benchmarks/gpu_concepts_check.sh), from
# the repo root: $OUT made, unbuffered offline Python as $PY, the wheels carried in .whl/ installed into $SITE (the
# machine's image lacks diffusers, captum, ...; fetch them here with `bash benchmarks/gpu_wheels.sh`), and the
# checkout first on PYTHONPATH.
OUT=${OUT:-benchmarks/.cache/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
  export PYTHONPATH="$SITE"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
