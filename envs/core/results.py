"""Writing results safely: atomic CSV writes, so an interrupted run never leaves a torn file."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def write_csv_atomic(path: str | Path, rows: Iterable[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Write ``rows`` to ``path`` through a temporary file and an atomic rename."""
    rows = list(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow(r)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV file written by :func:`write_csv_atomic` (empty list if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the results file ({exc}); move it away to start fresh") from exc
