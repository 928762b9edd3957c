"""SQLite results store: one row per episode (an EpisodeResult), written transactionally.

The store lives in the run's output folder (``results.sqlite``). Every row carries the cell key (a
hash of everything that determines the episode), the config hash, the package version and the git
commit, so a rerun skips what is done and a table can always be traced to the code that made it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    key TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    domain TEXT NOT NULL,
    env_id TEXT NOT NULL,
    instance_set TEXT NOT NULL,
    instance TEXT NOT NULL,
    policy TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    wall_time_s REAL NOT NULL,
    steps INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    version TEXT NOT NULL,
    git_commit TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""

COLUMNS = ("key", "suite", "domain", "env_id", "instance_set", "instance", "policy", "seed", "status", "error",
           "wall_time_s", "steps", "metrics", "config_hash", "version", "git_commit", "created_at")


class StoreError(RuntimeError):
    """The store file cannot be used (corrupt, or not a schedgym store)."""


class ResultsStore:
    """Episode rows in a SQLite file.

    Args:
        path: the database file (created if missing).
        fresh: move an existing file aside (``<name>.bak-<unix time>``, with its SQLite journal
            files) and start a new one; nothing is deleted, an existing backup is never replaced.

    Attributes:
        backup: where ``fresh`` moved the old file (None if nothing was moved).
    """

    def __init__(self, path: str | Path, fresh: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.backup: Path | None = None
        if fresh and self.path.exists():
            self.backup = self._move_aside()
        try:
            self.conn = sqlite3.connect(self.path, timeout=30)
            ok = self.conn.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(ok)
            with self.conn:
                self.conn.executescript(SCHEMA)
            cols = [r[1] for r in self.conn.execute("PRAGMA table_info(episodes)")]
            if tuple(cols) != COLUMNS:
                raise sqlite3.DatabaseError(f"unexpected columns {cols}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path}: not a usable results store ({exc}). Run again with fresh=true to move it aside "
                f"(it is kept as {self.path.name}.bak-<time>) and start a new store") from exc

    def _move_aside(self) -> Path:
        """Rename the store (and its -journal/-wal/-shm files, which belong to it) to a new
        ``.bak-<unix time>[-n]`` name; returns the backup path."""
        stem = f"{self.path.name}.bak-{int(time.time())}"
        backup = self.path.with_name(stem)
        n = 1
        while any(backup.with_name(backup.name + sfx).exists() for sfx in ("", "-journal", "-wal", "-shm")):
            backup = self.path.with_name(f"{stem}-{n}")
            n += 1
        for sfx in ("-journal", "-wal", "-shm"):
            side = self.path.with_name(self.path.name + sfx)
            if side.exists():
                side.rename(backup.with_name(backup.name + sfx))
        self.path.rename(backup)
        return backup

    def done_keys(self, include_failed: bool = True) -> set[str]:
        q = "SELECT key FROM episodes" + ("" if include_failed else " WHERE status != 'failed'")
        return {r[0] for r in self.conn.execute(q)}

    def put(self, row: dict[str, Any]) -> None:
        """Insert or replace one row, in its own transaction."""
        r = dict(row)
        r["metrics"] = json.dumps(r.get("metrics", {}), sort_keys=True, allow_nan=True)
        r.setdefault("created_at", time.time())
        with self.conn:
            self.conn.execute(
                f"INSERT OR REPLACE INTO episodes ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                [r.get(c, "") if c not in ("seed", "steps") else int(r.get(c, 0)) for c in COLUMNS])

    def put_many(self, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            self.put(r)

    def rows(self, suite: str | None = None) -> list[dict[str, Any]]:
        q = f"SELECT {', '.join(COLUMNS)} FROM episodes"
        args: tuple = ()
        if suite is not None:
            q += " WHERE suite = ?"
            args = (suite,)
        out = []
        for rec in self.conn.execute(q + " ORDER BY domain, instance_set, policy, instance, seed", args):
            d = dict(zip(COLUMNS, rec, strict=True))
            d["metrics"] = json.loads(d["metrics"])
            out.append(d)
        return out

    def set_meta(self, key: str, value: str) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self.conn.close()
