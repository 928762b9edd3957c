#!/usr/bin/env bash
# The main job on a fresh machine: install schedgym into .venv (if needed), then evaluate
# dispatching rules on Taillard 15x15 and CP-SAT on the Fisher-Thompson instances.
# Everything runs on the CPU with embedded defaults (no server, no account; W&B offline).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_ensure_env.sh
OUT="${OUT:-outputs/quickstart}"
for rule in spt mwkr mopnr; do
    python scripts/evaluate.py env=jobshop instances=taillard_15x15 policy=$rule show_instances=false \
        hydra.run.dir="$OUT/taillard_15x15-$rule"
done
python scripts/evaluate.py env=jobshop instances=ft policy=cpsat time_limit_s=20 \
    hydra.run.dir="$OUT/ft-cpsat"
