# Sourced by scripts/test.sh and scripts/quickstart.sh: create .venv and install schedgym into it
# (editable, with the dev extra) when missing or when pyproject.toml changed since the last install.
# CPU torch: pyproject pins torch==2.13.0; for a CUDA build install it first, see README.
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
STAMP=.venv/.schedgym-installed
HASH="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$HASH" > "$STAMP"
fi
export PATH="$PWD/.venv/bin:$PATH"
export WANDB_MODE="${WANDB_MODE:-offline}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
