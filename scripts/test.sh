#!/usr/bin/env bash
# Install schedgym into .venv (if needed) and run the tests. Arguments go to pytest:
#   bash scripts/test.sh            # default suite (slow tests excluded)
#   bash scripts/test.sh -m slow    # slow tests only
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_ensure_env.sh
exec python -m pytest "$@"
