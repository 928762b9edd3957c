"""Runners execute tasks (see :mod:`schedgym.evaluation.suite`) and yield result rows as they finish.

* ``serial``: in this process (debugging).
* ``process`` (default): a local process pool (``spawn``: safe with torch), ``workers`` processes.
* ``ray``: Ray tasks on a local Ray instance, or on an existing cluster when ``address`` (or the
  ``RAY_ADDRESS`` environment variable) is given. Ray is the optional ``[ray]`` extra.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

_AGENTS: dict[str, Any] = {}


@lru_cache(maxsize=1)
def provenance() -> tuple[str, str]:
    """(package version, git commit or 'unknown')."""
    from schedgym import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return __version__, commit


def _agent(task: dict[str, Any]) -> Any:
    """The task's policy or solver, built once per process and config."""
    import hydra

    key = task["config_hash"] + task["policy"]
    if key not in _AGENTS:
        _AGENTS[key] = hydra.utils.instantiate(task["policy_cfg"], _convert_="all")
    return _AGENTS[key]


def agent_for(task: dict[str, Any]) -> Any:
    """The task's policy or solver, in the same state whatever ran before it in this process.

    Agents with ``reset_seed(seed)`` are reseeded with the episode seed. Others are a copy of the
    freshly built agent, and a numpy ``rng`` attribute is reseeded from (config ``seed``, episode
    seed): a random policy then gives the same episode on any runner, in any order, and on resume.
    """
    import numpy as np

    proto = _agent(task)
    if hasattr(proto, "reset_seed"):
        proto.reset_seed(task["seed"])
        return proto
    agent = copy.deepcopy(proto)
    if isinstance(getattr(agent, "rng", None), np.random.Generator):
        base = task["policy_cfg"].get("seed")
        agent.rng = np.random.default_rng([task["seed"]] if base is None else [int(base), task["seed"]])
    return agent


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one episode; never raises (a crash becomes a ``failed`` row with its traceback)."""
    import torch

    torch.set_num_threads(1)
    from schedgym.envs.core.domain import get_domain
    from schedgym.envs.core.episode import EpisodeResult, env_kwargs_for_agent, is_solver, run_episode

    version, commit = provenance()
    base = {k: task[k] for k in ("key", "suite", "domain", "instance_set", "instance", "policy", "seed",
                                 "config_hash")}
    base.update(version=version, git_commit=commit)
    try:
        domain = get_domain(task["domain"])
        agent = agent_for(task)
        instance = domain.load(task["instance"])
        env_kwargs = env_kwargs_for_agent(task["env_kwargs"], agent)
        res = run_episode(domain, instance, agent, seed=task["seed"], suite=task["instance_set"],
                          env_kwargs=env_kwargs, time_limit_s=task["time_limit_s"] if is_solver(agent) else None)
    except Exception:  # noqa: BLE001 - bad config or load error: the cell fails, the run goes on
        res = EpisodeResult(env_id="", suite=task["instance_set"], instance=task["instance"], policy=task["policy"],
                            seed=task["seed"], status="failed", error=traceback.format_exc(limit=8))
    base.update(env_id=res.env_id, status=res.status, error=res.error, wall_time_s=res.wall_time_s,
                steps=res.steps, metrics=res.metrics)
    return base


def run_serial(tasks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for t in tasks:
        yield run_task(t)


#: seconds between two checks of a pool worker that its parent is still alive
PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _exit_with_parent(parent_pid: int) -> None:
    """Make this process exit when ``parent_pid`` dies, even by SIGKILL (the OOM killer), instead of
    holding its memory as an orphan: on Linux the kernel sends SIGKILL at the parent's death
    (``prctl(PR_SET_PDEATHSIG)``); everywhere, a daemon thread checks every :data:`PARENT_POLL_S`
    seconds that the process was not re-parented and exits at once if it was."""
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the polling thread still covers it
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="schedgym-parent-watch", daemon=True).start()


def _init_worker(parent_pid: int) -> None:
    """Pool worker initializer: Ctrl-C is handled by the parent, which stops the pool; the worker
    exits when the parent dies (:func:`_exit_with_parent`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent_pid)


def run_process_pool(tasks: list[dict[str, Any]], workers: int | None = None) -> Iterator[dict[str, Any]]:
    """Rows as episodes finish on ``workers`` spawned processes (default: one per CPU core).

    If the caller stops early (Ctrl-C, an exception, closing the generator), the episodes not
    started are cancelled and the workers are terminated at once; finished rows were already
    yielded, so a rerun resumes from them. If the caller is killed (SIGKILL, the OOM killer), the
    workers exit within about a second (:func:`_exit_with_parent`).
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(tasks) <= 1:
        yield from run_serial(tasks)
        return
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker,
                               initargs=(os.getpid(),))
    finished = False
    try:
        futures = [pool.submit(run_task, t) for t in tasks]
        for f in as_completed(futures):
            yield f.result()
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
            for proc in procs:
                proc.join(timeout=5)


def run_ray(tasks: list[dict[str, Any]], address: str | None = None, num_cpus: int | None = None
            ) -> Iterator[dict[str, Any]]:
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("runner=ray needs Ray: pip install -e '.[ray]'") from exc
    address = address or os.environ.get("RAY_ADDRESS")
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, ignore_reinit_error=True)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True)
        started = True
    remote = ray.remote(num_cpus=1)(run_task)
    pending = [remote.remote(t) for t in tasks]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


def run_tasks(tasks: list[dict[str, Any]], runner: str = "process", workers: int | None = None,
              address: str | None = None) -> Iterator[dict[str, Any]]:
    """Dispatch to a runner by name: ``serial``, ``process`` or ``ray``."""
    if runner == "serial":
        return run_serial(tasks)
    if runner == "process":
        return run_process_pool(tasks, workers)
    if runner == "ray":
        return run_ray(tasks, address=address, num_cpus=workers)
    from schedgym.envs.core.errors import UnknownNameError

    raise UnknownNameError("runner", runner, ["serial", "process", "ray"])
