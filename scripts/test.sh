#!/usr/bin/env bash
# The whole test suite, every tier (unit, integration, system, ml, vm), plus the static checks.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

echo "‣ static checks"
ruff check .
ruff format --check .
mypy
python build.py --quiet check
python build.py --quiet lint

echo "‣ pytest (all tiers)"
python -m pytest -m "unit or integration or system or ml or vm" "$@"

echo "‣ benchmarks (JSON in bench/results/, and appended to the history in the bootlab cache)"
mkdir -p bench/results
for bench in render upgrade_delta daemon pull serve train sdg; do
  python -m "bench.$bench" 2>"bench/results/$bench.log" | tail -n 1 | tee "bench/results/$bench.json"
  python -m bench.history add "$bench" <"bench/results/$bench.json"
done

echo "‣ benchmark history: the last runs of each figure"
python -m bench.history table
