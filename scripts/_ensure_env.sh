# Sourced by scripts/test.sh and scripts/quickstart.sh: create .venv and install schedgym into it
# (editable, with the dev extra) when missing or when pyproject.toml changed since the last install.
# CPU torch: pyproject pins torch==2.13.0; for a CUDA build install it first, see README.
# SCHEDGYM_EXTRAS picks the extras (default: dev; CI uses dev,ray).
PY="${PYTHON:-python3}"
EXTRAS="${SCHEDGYM_EXTRAS:-dev}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
STAMP=.venv/.schedgym-installed
HASH="$( (cat pyproject.toml; echo "$EXTRAS") | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
    echo "$HASH" > "$STAMP"
fi
export PATH="$PWD/.venv/bin:$PATH"
export WANDB_MODE="${WANDB_MODE:-offline}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
