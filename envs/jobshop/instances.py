"""Job-shop benchmark instances: file readers, the bundled catalogue with bounds, and named sets.

Formats
-------
* **standard** (``.txt``, the JSPLib/ScheduleOpt format): first line ``n_jobs n_machines``, then one
  line per job with ``machine duration`` pairs in processing order, machines 0-indexed. Lines
  starting with ``#`` are comments.
* **fjs** (``.fjs``, Brandimarte/Hurink flexible format): first line ``n_jobs n_machines [avg]``,
  then one line per job: ``n_ops`` followed, per operation, by ``k`` and ``k`` pairs
  ``machine duration`` with machines 1-indexed.

Bundled sets (see ``envs/data/ATTRIBUTION.md``): Taillard ta01-ta80, DMU dmu01-dmu80, ft, la, abz,
orb, swv, yn and Brandimarte mk01-mk15, with the current best-known bounds.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError, UnknownNameError
from schedgym.envs.core.sources import expand_names
from schedgym.envs.jobshop.types import JobShopInstance

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "jobshop"
_FAMILY_DIRS = {"taillard": "taillard", "dmu": "dmu", "classic": "classic", "brandimarte": "brandimarte"}


# ------------------------------------------------------------------------------------------------
# readers
# ------------------------------------------------------------------------------------------------
def _data_lines(text: str) -> list[tuple[int, list[str]]]:
    """(1-based line number, tokens) of every non-empty, non-comment line."""
    out = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append((i, line.split()))
    return out


#: largest absolute value of any number in an instance file (durations, indices, counts): 2**31 - 1, so
#: that sums of durations (makespans, CP-SAT horizons) stay far inside int64
MAX_NUMBER = 2**31 - 1
#: most machines a ``.fjs`` header may declare (each operation gets one row of that many entries)
MAX_FJS_MACHINES = 10_000
_INT_RE = re.compile(r"[+-]?[0-9]+")


def _ints(tokens: list[str], source: str, line: int) -> list[int]:
    """The tokens as integers; a non-integer token (``1.5``, ``abc``, non-ASCII digits) or one beyond
    :data:`MAX_NUMBER` in absolute value is an :class:`InstanceFormatError` naming the line."""
    out = []
    for t in tokens:
        if not _INT_RE.fullmatch(t):
            raise InstanceFormatError(source, f"token {t!r} is not an integer", line,
                                      "durations and machine indices are integers")
        digits = t.lstrip("+-").lstrip("0")
        if len(digits) > len(str(MAX_NUMBER)) or abs(int(t)) > MAX_NUMBER:
            shown = t if len(t) <= 30 else f"{t[:12]}...{t[-6:]} ({len(digits)} digits)"
            raise InstanceFormatError(source, f"number {shown} is out of range", line,
                                      f"numbers in an instance file are at most {MAX_NUMBER} in absolute value")
        out.append(int(t))
    return out


def _check_job_count(source: str, n_jobs: int, rows: list[tuple[int, list[str]]], hline: int) -> None:
    """Exactly ``n_jobs`` job lines after the header; the error names the first extra line or the last one."""
    if len(rows) == n_jobs:
        return
    line = rows[n_jobs][0] if len(rows) > n_jobs else (rows[-1][0] if rows else hline)
    raise InstanceFormatError(source, f"header declares {n_jobs} jobs but {len(rows)} job lines follow", line,
                              "one line per job; fix the header's job count or remove the extra lines")


def parse_standard(text: str, name: str = "instance", source: str = "<string>") -> JobShopInstance:
    """Parse a JSSP in the standard text format (machines 0-indexed)."""
    lines = _data_lines(text)
    if not lines:
        raise InstanceFormatError(source, "the file is empty", fix="expected a header line 'n_jobs n_machines'")
    hline, header = lines[0]
    head = _ints(header, source, hline)
    if len(head) < 2:
        raise InstanceFormatError(source, f"header has {len(head)} number(s)", hline, "expected 'n_jobs n_machines'")
    n_jobs, n_machines = head[0], head[1]
    if n_jobs <= 0 or n_machines <= 0:
        raise InstanceFormatError(source, f"header says {n_jobs} jobs and {n_machines} machines", hline,
                                  "both must be positive")
    rows = lines[1:]
    _check_job_count(source, n_jobs, rows, hline)
    machines: list[list[int]] = []
    durations: list[list[int]] = []
    for j, (ln, toks) in enumerate(rows):
        vals = _ints(toks, source, ln)
        if len(vals) != 2 * n_machines:
            raise InstanceFormatError(
                source, f"job {j} has {len(vals)} numbers, expected {2 * n_machines} "
                f"({n_machines} 'machine duration' pairs)", ln)
        ms, ds = vals[0::2], vals[1::2]
        for k, (m, d) in enumerate(zip(ms, ds)):
            if not 0 <= m < n_machines:
                raise InstanceFormatError(source, f"job {j} operation {k}: machine index {m} is out of range "
                                          f"0..{n_machines - 1}", ln, "machines are 0-indexed in this format")
            if d < 0:
                raise InstanceFormatError(source, f"job {j} operation {k}: negative duration {d}", ln,
                                          "durations must be >= 0")
        machines.append(ms)
        durations.append(ds)
    return JobShopInstance.from_matrices(name, np.asarray(machines, dtype=np.int64),
                                         np.asarray(durations, dtype=np.int64), n_machines=n_machines, source=source)


def parse_fjs(text: str, name: str = "instance", source: str = "<string>") -> JobShopInstance:
    """Parse a flexible job-shop in the ``.fjs`` format (machines 1-indexed)."""
    lines = _data_lines(text)
    if not lines:
        raise InstanceFormatError(source, "the file is empty", fix="expected a header 'n_jobs n_machines [avg]'")
    hline, header = lines[0]
    head = _ints(header[:2], source, hline)
    if len(head) < 2 or head[0] <= 0 or head[1] <= 0:
        raise InstanceFormatError(source, f"bad header {' '.join(header)!r}", hline,
                                  "expected positive 'n_jobs n_machines [avg_machines_per_op]'")
    n_jobs, n_machines = head
    if n_machines > MAX_FJS_MACHINES:
        raise InstanceFormatError(source, f"header declares {n_machines} machines", hline,
                                  f"at most {MAX_FJS_MACHINES} machines are supported")
    rows = lines[1:]
    _check_job_count(source, n_jobs, rows, hline)
    proc_rows: list[np.ndarray] = []
    job_ptr = [0]
    for j, (ln, toks) in enumerate(rows):
        vals = _ints(toks, source, ln)
        if not vals or vals[0] <= 0:
            raise InstanceFormatError(source, f"job {j}: first number (operation count) must be positive", ln)
        n_ops, pos = vals[0], 1
        for k in range(n_ops):
            if pos >= len(vals):
                raise InstanceFormatError(source, f"job {j}: line ends before operation {k} of {n_ops}", ln,
                                          "each operation is 'k' then k 'machine duration' pairs")
            n_alt = vals[pos]
            pos += 1
            if n_alt <= 0:
                raise InstanceFormatError(source, f"job {j} operation {k}: {n_alt} alternative machines", ln,
                                          "each operation needs at least one machine")
            if pos + 2 * n_alt > len(vals):
                raise InstanceFormatError(source, f"job {j} operation {k}: expected {n_alt} 'machine duration' "
                                          f"pairs, line ends early", ln)
            row = np.zeros(n_machines, dtype=np.int64) - 1
            for _ in range(n_alt):
                m, d = vals[pos], vals[pos + 1]
                pos += 2
                if not 1 <= m <= n_machines:
                    raise InstanceFormatError(source, f"job {j} operation {k}: machine {m} out of range "
                                              f"1..{n_machines}", ln, "machines are 1-indexed in .fjs files")
                if d < 0:
                    raise InstanceFormatError(source, f"job {j} operation {k}: negative duration {d}", ln)
                if row[m - 1] >= 0:
                    raise InstanceFormatError(source, f"job {j} operation {k}: machine {m} is listed twice "
                                              f"(durations {row[m - 1]} and {d})", ln,
                                              "list each eligible machine once per operation")
                row[m - 1] = d
            proc_rows.append(row)
        if pos != len(vals):
            raise InstanceFormatError(source, f"job {j}: {len(vals) - pos} extra number(s) after its "
                                      f"{n_ops} operations", ln)
        job_ptr.append(job_ptr[-1] + n_ops)
    raw = np.stack(proc_rows)
    eligible = raw >= 0
    proc = np.where(eligible, raw, 0)
    return JobShopInstance(
        name=name, job_ptr=np.asarray(job_ptr, dtype=np.int64), proc=proc, eligible=eligible,
        release=np.zeros(n_jobs, dtype=np.int64), source=source,
    )


def _read_text(path: Path) -> str:
    """The file's text; a binary (NUL bytes) or non-UTF-8 file is an :class:`InstanceFormatError`."""
    data = path.read_bytes()
    problem = "is a binary file (it contains NUL bytes)" if b"\0" in data else None
    if problem is None:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"is not a UTF-8 text file (undecodable byte at offset {exc.start})"
    raise InstanceFormatError(str(path), problem,
                              fix="expected a text instance file: the standard 'n_jobs n_machines' format or .fjs")


def read_instance_file(path: str | Path, name: str | None = None) -> JobShopInstance:
    """Read an instance file; the format follows the extension (``.fjs`` flexible, else standard)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such instance file")
    text = _read_text(path)
    name = name or path.stem
    if path.suffix.lower() == ".fjs":
        return parse_fjs(text, name=name, source=str(path))
    return parse_standard(text, name=name, source=str(path))


# ------------------------------------------------------------------------------------------------
# bundled catalogue
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _catalogue() -> dict[str, Path]:
    """Name -> path of every bundled instance."""
    out: dict[str, Path] = {}
    for sub in _FAMILY_DIRS.values():
        for p in sorted((DATA_DIR / sub).iterdir()):
            if p.suffix in (".txt", ".fjs"):
                out[p.stem] = p
    return out


@lru_cache(maxsize=1)
def _bounds() -> dict[str, dict]:
    return json.loads((DATA_DIR / "bounds.json").read_text())


def bundled_names() -> list[str]:
    """Names of all bundled instances."""
    return list(_catalogue())


def bounds_of(name: str) -> tuple[int | None, int | None]:
    """(best known lower bound, best known upper bound) of a bundled instance, or (None, None)."""
    b = _bounds().get(name)
    return (b["lb"], b["ub"]) if b else (None, None)


@lru_cache(maxsize=512)
def _load_bundled(name: str) -> JobShopInstance:
    path = _catalogue()[name]
    inst = read_instance_file(path, name=name)
    lb, ub = bounds_of(name)
    family = path.parent.name
    return JobShopInstance(
        name=inst.name, job_ptr=inst.job_ptr, proc=inst.proc, eligible=inst.eligible, release=inst.release,
        lower_bound=lb, upper_bound=ub, source=f"bundled:{family}/{path.name}", meta={"family": family},
    )


def generated_instance(spec: str) -> JobShopInstance:
    """A generated instance named by its generator and seeds (reproducible from the name):

    * ``gen:taillard:<J>x<M>:<time seed>:<machine seed>``: Taillard's generator;
    * ``gen:uniform:<J>x<M>:<seed>``: L2D's U[1, 99] generator with ``np.random.default_rng(seed)``;
    * ``gen:flexible:<J>x<M>:<seed>[:<ops low>-<ops high>:<alt low>-<alt high>:<p low>-<p high>]``:
      :class:`~schedgym.envs.jobshop.generator.FlexibleJobShopGenerator` (operations per job,
      eligible machines per operation, processing times; defaults 5-7, 1-3, 1-20) with
      ``np.random.default_rng(seed)``; its lower bound also counts the total shortest work / M.
    """
    from schedgym.envs.jobshop.generator import (
        FlexibleJobShopGenerator,
        UniformJobShopGenerator,
        taillard_instance,
    )

    parts = spec.split(":")
    inst = None
    try:
        kind, size = parts[1], parts[2]
        j, m = (int(x) for x in size.split("x"))
        if kind == "taillard" and len(parts) == 5:
            inst = taillard_instance(j, m, int(parts[3]), int(parts[4]), name=spec)
        if kind == "uniform" and len(parts) == 4:
            inst = UniformJobShopGenerator(j, m)(np.random.default_rng(int(parts[3])))
        if kind == "flexible" and len(parts) in (4, 7):
            ranges = [tuple(int(v) for v in r.split("-")) for r in parts[4:]]
            if any(len(r) != 2 for r in ranges):
                raise ValueError(spec)
            keys = ("ops_low", "ops_high", "alt_low", "alt_high", "low", "high")
            kw = dict(zip(keys, [v for r in ranges for v in r]))
            inst = FlexibleJobShopGenerator(j, m, **kw)(np.random.default_rng(int(parts[3])))
    except (IndexError, ValueError):
        inst = None
    if inst is not None:
        # trivial lower bound on the makespan (longest job, most loaded machine), so that
        # gap_to_lb_pct is defined and comparable across sizes
        job_work = np.add.reduceat(inst.min_proc, inst.job_ptr[:-1]) + inst.release
        lb = int(max(job_work.max(), (inst.proc * (inst.eligible.sum(axis=1) == 1)[:, None]).sum(axis=0).max()))
        if kind == "flexible":  # every machine-time unit is shared: total shortest work / M
            lb = max(lb, -(-int(inst.min_proc.sum()) // inst.n_machines))
        return JobShopInstance(name=spec, job_ptr=inst.job_ptr, proc=inst.proc, eligible=inst.eligible,
                               release=inst.release, lower_bound=lb, source=inst.source)
    raise InstanceFormatError(spec, "not a generated-instance name",
                              fix="use gen:taillard:<J>x<M>:<time seed>:<machine seed>, gen:uniform:<J>x<M>:<seed> or "
                               "gen:flexible:<J>x<M>:<seed>[:<ops>-<ops>:<alt>-<alt>:<p>-<p>]")


def load_instance(name_or_path: str | Path | JobShopInstance) -> JobShopInstance:
    """Load a bundled instance by name (``"ta01"``, ``"mk01"``), a generated one by its name
    (``"gen:taillard:15x15:840612802:398197754"``, see :func:`generated_instance`) or read a file.

    Raises:
        UnknownNameError: not a bundled name nor an existing file; lists the close matches.
        InstanceFormatError: the file is malformed (names the file, the line and the problem).
    """
    if isinstance(name_or_path, JobShopInstance):
        return name_or_path
    key = str(name_or_path)
    if key.startswith("gen:"):
        return generated_instance(key)
    if key in _catalogue():
        return _load_bundled(key)
    if key.lower() in _catalogue():
        return _load_bundled(key.lower())
    p = Path(key)
    if p.suffix or p.exists() or "/" in key:
        if p.is_file():
            return read_instance_file(p)
        raise FileNotFoundError(f"{key}: no such instance file (and not a bundled instance name)")
    raise UnknownNameError("job-shop instance", key, _catalogue())


# ------------------------------------------------------------------------------------------------
# named sets
# ------------------------------------------------------------------------------------------------
def _size_of(path: Path) -> tuple[int, int]:
    with path.open() as fh:
        for raw in fh:
            line = raw.split("#", 1)[0].split()
            if line:
                return int(line[0]), int(line[1])
    raise InstanceFormatError(str(path), "the file is empty")


@lru_cache(maxsize=1)
def instance_sets() -> dict[str, list[str]]:
    """Named instance sets: families (``taillard``, ``dmu``, ``brandimarte``, ``ft``, ``la``, ...) and
    families by size (``taillard_15x15``, ``dmu_20x15``, ...), plus ``smoke`` for quick checks."""
    sets: dict[str, list[str]] = {}
    for name, path in _catalogue().items():
        family = path.parent.name
        prefix = re.match(r"[a-z]+", name).group(0)
        groups = [family]
        if family == "classic":
            groups.append(prefix)
        if family in ("taillard", "dmu"):
            j, m = _size_of(path)
            groups.append(f"{family}_{j}x{m}")
        for g in groups:
            sets.setdefault(g, []).append(name)
    sets["smoke"] = ["ft06", "la01", "ta01"]
    sets["brandimarte_smoke"] = ["mk01", "mk02"]
    return sets


def resolve_instances(spec: str | list[str]) -> list[str]:
    """Expand a set name or a list of set names / instance names / file paths into instance names."""
    cat = _catalogue()
    return expand_names(spec, instance_sets(),
                        lambda n: n in cat or Path(n).is_file() or n.startswith("gen:"),
                        "job-shop instance or set", list(cat))
