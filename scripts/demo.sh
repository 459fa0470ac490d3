#!/usr/bin/env bash
# Fresh machine -> the demo: install, then audit the bundled biased shapes-world classifier on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/probe demo "$@"
