"""Run a leaderboard suite, store every episode, and render tables and plots.

Examples::

    python scripts/leaderboard.py                         # default suite on a local process pool
    python scripts/leaderboard.py suite=smoke runner=serial
    python scripts/leaderboard.py suite=full runner=ray runner.address=auto
    python scripts/leaderboard.py logger=wandb            # also log tables and plots to W&B (offline)

Outputs in the Hydra output dir (default ``outputs/leaderboard/<suite>``): ``results.sqlite`` (one
row per episode), ``leaderboard.md``, ``leaderboard.csv`` and ``plots/*.png``. A rerun into the same
dir computes only the episodes not stored yet.

Exit status (see :mod:`schedgym.cli`): 0; 1 when an episode of the suite failed or was invalid, or a
plot failed (tables and plots are written first); 2 for a bad suite or command line (unknown name,
empty list, a policy that does not apply to its cell's env), found when the suite is expanded,
before anything runs; 130 when interrupted.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from contextlib import closing
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from schedgym.cli import CONFIG_PATH, conf_dir
from schedgym.cli._exit import EXIT_INTERRUPTED, Outcome, config_errors_exit, run_app

#: what the jobs of this process ran into (a sweep runs several); read by :func:`main`
OUTCOME = Outcome()


def _progress(total: int, description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=not sys.stdout.isatty())


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="leaderboard")
def _app(cfg: DictConfig) -> None:
    OUTCOME.started = True
    from schedgym.evaluation.aggregate import aggregate, to_markdown, with_published
    from schedgym.evaluation.plots import make_plots
    from schedgym.evaluation.published import published_rows
    from schedgym.evaluation.runners import run_tasks
    from schedgym.evaluation.store import ResultsStore
    from schedgym.evaluation.suite import expand_suite

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(HydraConfig.get().runtime.output_dir)
    suite_cfg = OmegaConf.to_container(cfg.suite, resolve=True)
    with config_errors_exit():
        tasks = expand_suite(suite_cfg, conf_dir())
    store = ResultsStore(out / "results.sqlite", fresh=bool(cfg.fresh))
    if store.backup is not None:
        print(f"fresh=true: moved the previous store to {store.backup} (kept) and started a new one")
    store.set_meta("suite", OmegaConf.to_yaml(cfg.suite))
    done = store.done_keys(include_failed=not cfg.retry_failed)
    todo = [t for t in tasks if t["key"] not in done]
    print(f"suite {suite_cfg['name']}: {len(tasks)} episodes, {len(tasks) - len(todo)} already in {store.path}, "
          f"running {len(todo)} with runner={cfg.runner.kind}")
    t0 = time.perf_counter()
    if todo:
        stored = 0
        try:
            with _progress(len(todo), f"leaderboard {suite_cfg['name']}") as prog, closing(
                    run_tasks(todo, runner=cfg.runner.kind, workers=cfg.runner.workers,
                              address=cfg.runner.get("address"))) as results:
                bar = prog.add_task("episodes", total=len(todo))
                for row in results:
                    store.put(row)
                    stored += 1
                    prog.advance(bar)
                    if row["status"] in ("failed", "invalid"):
                        last = row["error"].strip().splitlines()[-1] if row["error"] else ""
                        prog.console.print(f"[{row['status']}] {row['domain']} {row['instance']} {row['policy']}: "
                                           f"{last}", markup=False, highlight=False)
        except KeyboardInterrupt:
            store.close()
            print(f"\ninterrupted: {stored} of {len(todo)} episodes of this run are stored in {out / 'results.sqlite'}; "
                  f"run the same command (same hydra.run.dir) to resume", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
    keys = {t["key"] for t in tasks}
    rows = [r for r in store.rows() if r["key"] in keys]
    records = with_published(aggregate(rows, n_boot=int(cfg.bootstrap)), published_rows())
    md = to_markdown(records, title=f"schedgym leaderboard: suite {suite_cfg['name']}")
    (out / "leaderboard.md").write_text(md + "\n")
    cols = ["domain", "instance_set", "policy", "source", "metric", "mean", "ci_low", "ci_high", "episodes", "failed",
            "wall_time_s_per_episode", "rank", "rank_metric", "citation", "note"]
    tmp = out / ".leaderboard.csv.tmp"
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(records)
    os.replace(tmp, out / "leaderboard.csv")
    plots: list[Path] = []
    if cfg.plots:
        made = make_plots(rows, published_rows(), out / "plots", {t["key"]: t for t in tasks},
                          pictures=bool(cfg.pictures))
        plots = made.paths
        if made.failures:
            OUTCOME.fail(f"{len(made.failures)} plots failed (tracebacks above): " + "; ".join(made.failures))
    print(md)
    failed = sum(1 for r in rows if r["status"] in ("failed", "invalid"))
    print(f"\n{len(rows)} episodes ({failed} failed or invalid) in {time.perf_counter() - t0:.1f} s of this run; "
          f"tables: {out / 'leaderboard.md'}, {out / 'leaderboard.csv'}; {len(plots)} plots in {out / 'plots'}")
    if failed:
        OUTCOME.fail(f"{failed} of {len(rows)} episodes of suite {suite_cfg['name']} failed or were invalid; their "
                     f"errors are in {out / 'results.sqlite'} (retry_failed=true reruns the failed ones)")
    if cfg.logger.kind == "wandb":
        _log_wandb(cfg, out, records, plots)
    store.close()


def main() -> None:
    """Console entry point (``schedgym-leaderboard``, ``python scripts/leaderboard.py``); exit
    statuses as documented in :mod:`schedgym.cli`."""
    run_app(_app, OUTCOME)


def _log_wandb(cfg: DictConfig, out: Path, records: list[dict], plots: list[Path]) -> None:
    import wandb

    mode = cfg.logger.get("mode") or os.environ.get("WANDB_MODE") or "offline"
    run = wandb.init(project=cfg.logger.project, entity=cfg.logger.get("entity"), dir=str(out), mode=mode,
                     name=f"leaderboard-{cfg.suite.name}", job_type="leaderboard",
                     config=OmegaConf.to_container(cfg, resolve=True))
    cols = list(records[0]) if records else []
    run.log({"leaderboard": wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in records])})
    for p in plots:
        run.log({f"plots/{p.stem}": wandb.Image(str(p))})
    run.finish()


if __name__ == "__main__":
    main()
