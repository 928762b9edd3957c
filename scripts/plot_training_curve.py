"""Plot a self-labeling run's training curve from its TensorBoard log.

Left: the held-out greedy metric at each evaluation (``--metric``, e.g. ``eval/slr``), with optional
reference lines (``--ref NAME=VALUE``, e.g. the best rule on the same held-out instances). Right:
the label's and the samples' mean objective on the training instances (10-iteration running mean).

    python scripts/plot_training_curve.py RUN_DIR OUT.png --metric eval/slr --ref HEFT=2.2165
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="the training run's output dir (holds tb/)")
    ap.add_argument("out", help="PNG to write")
    ap.add_argument("--metric", default="eval/makespan", help="held-out metric tag (default eval/makespan)")
    ap.add_argument("--ref", action="append", default=[], help="NAME=VALUE reference line on the held-out plot")
    ap.add_argument("--title", default="held-out instances, greedy")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = sorted(Path(args.run_dir, "tb").glob("*"))
    if not logs:
        sys.exit(f"{args.run_dir}/tb: no TensorBoard log (train with logger=tensorboard or wandb)")
    ea = EventAccumulator(str(logs[0]))
    ea.Reload()
    tags = ea.Tags()["scalars"]
    if args.metric not in tags:
        sys.exit(f"{args.metric}: not in the log; tags: {sorted(tags)}")

    def series(tag: str) -> tuple[np.ndarray, np.ndarray]:
        ev = ea.Scalars(tag)
        return np.array([e.step for e in ev]), np.array([e.value for e in ev])

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6))
    x, y = series(args.metric)
    ax0.plot(x, y, "o-", label="policy, greedy")
    for ref in args.ref:
        name, _, value = ref.partition("=")
        ax0.axhline(float(value), color="grey", ls="--", label=f"{name} ({float(value):g})")
    ax0.set(xlabel="iteration (training instances)", ylabel=args.metric.split("/")[-1], title=args.title)
    ax0.legend()
    k = 10
    for tag, label in (("train/best_objective", "label (best of samples and rules)"),
                       ("train/mean_objective", "policy samples, mean")):
        if tag in tags:
            x, y = series(tag)
            if len(y) >= k:
                ax1.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), label=label)
    ax1.set(xlabel="iteration", ylabel=f"objective ({k}-iteration mean)", title="training instances")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
