#!/usr/bin/env bash
# Fresh machine -> the test suite: install probe, Chromium for the report's browser test, run pytest offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # the install is tried even when the index update fails (an unsigned mirror, or apt unable to write its
    # temporary files, 8 December 2026): the lists already there often hold the packages
    (apt-get update -qq >/dev/null 2>&1 || true; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "warning: could not install chromium; the browser test will be skipped"
  else
    echo "note: chromium/chromedriver not found and not root; the browser test will be skipped"
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
set +e
# Two pytest-xdist workers, one test file each at a time, one thread each (tests/conftest.py): the 2-core
# machines finish the suite in 8-13 minutes, by CPU (docs/timings.md), instead of about twice that. --no-loadscope-reorder keeps the files in the
# order tests/conftest.py gives them (the longest first, those that read the shared demos last); by default
# pytest-xdist hands out the files with the most tests first.
.venv/bin/python -m pytest -q -rs -n 2 --dist loadfile --no-loadscope-reorder "$@"
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$code"
