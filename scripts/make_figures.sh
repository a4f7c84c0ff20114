#!/usr/bin/env bash
# Regenerate the README's figures from budgetopt's own commands (CPU is fine, ~1 minute).
#   bash scripts/make_figures.sh [python-env-bin-dir, default .venv/bin]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-.venv/bin}"
mkdir -p docs
"$BIN/budgetopt" plot frontier -o docs/frontier.png --width 11 --height 4.8
"$BIN/budgetopt" sweep --example h100-cluster --samples 1e6 --candidates 32 -q -f json -o docs/sweep.json
"$BIN/budgetopt" plot sweep --sweep docs/sweep.json -o docs/sweep.png
rm -f docs/sweep.json
"$BIN/python" scripts/make_runs.py --law gadre2024-rpj --metric --sizes 7 -o docs/forecast_runs.csv
"$BIN/budgetopt" forecast docs/forecast_runs.csv --metric avg_err --flops 1e23 -f json -o docs/forecast.json
"$BIN/budgetopt" plot forecast --forecast docs/forecast.json -o docs/forecast.png
rm -f docs/forecast_runs.csv docs/forecast.json
"$BIN/budgetopt" plot memory -o docs/memory.png
"$BIN/budgetopt" ladder --at 1e24 -f json -o docs/ladder.json
"$BIN/budgetopt" plot ladder --ladder docs/ladder.json -o docs/ladder.png
rm -f docs/ladder.json
"$BIN/budgetopt" plot moe -o docs/moe.png
# the backtest figure needs the real ladders (../shared/data/ladders/isoflops.csv; 3-4 minutes)
if [ -f ../shared/data/ladders/isoflops.csv ]; then
  "$BIN/budgetopt" fit ../shared/data/ladders/isoflops.csv --group experiment --c-col budget --backtest --approach all \
    -f json -o docs/backtest.json
  "$BIN/budgetopt" plot backtest --backtest docs/backtest.json -o docs/backtest.png
  rm -f docs/backtest.json
fi
# the loss-curve figure needs the real curves (../shared/data/curves, Luo et al. 2025's release; ~30 s)
if [ -d ../shared/data/curves/25 ]; then
  C=../shared/data/curves/25
  "$BIN/budgetopt" curves "$C/constant_24000.csv" "$C/cosine_24000.csv" "$C/wsdcon_9.csv" --warmup 2160 \
    --holdout "$C/wsd_20000_24000.csv" --predict wsd-1sqrt=wsd:steps=24000,lr=3e-4,cooldown=0.2,shape=1-sqrt,warmup=2160 \
    -f json -o docs/curves.json
  "$BIN/budgetopt" plot curves --curves docs/curves.json -o docs/curves.png
  rm -f docs/curves.json
fi
