#!/usr/bin/env bash
# The main job on a fresh machine (CPU only, embedded defaults, no account, W&B offline):
#   1. install schedgym into .venv (first run only),
#   2. a short PPO training run of the GNN policy on random 10x10 job-shops (progress bar,
#      TensorBoard + offline W&B run, checkpoints), evaluated on Taillard 15x15,
#   3. the default leaderboard: every domain, every baseline, the shipped checkpoint, solvers with
#      short time limits -> leaderboard.md / leaderboard.csv / plots.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_ensure_env.sh
OUT="${OUT:-outputs/quickstart}"

python scripts/train.py env=jobshop agent=ppo_gnn total_timesteps="${TRAIN_STEPS:-4096}" \
    eval.every=2048 checkpoint_every=2048 hydra.run.dir="$OUT/train"
python scripts/evaluate.py env=jobshop instances=taillard_15x15 policy=ppo_gnn \
    policy.checkpoint="$OUT/train/policy.pt" show_instances=false hydra.run.dir="$OUT/eval-trained"
python scripts/leaderboard.py hydra.run.dir="$OUT/leaderboard"
echo "leaderboard: $OUT/leaderboard/leaderboard.md, plots in $OUT/leaderboard/plots"
