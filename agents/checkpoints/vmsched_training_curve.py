"""Plot the training curve of a ``python scripts/train.py experiment=sls_vmsched`` run from its
TensorBoard log: held-out mean fragment rate (greedy, 3 generated M snapshots, MNL 50) and the
label / mean sampled fragment rate of the training snapshots (140 PMs, MNL 25), per iteration.

    python agents/checkpoints/vmsched_training_curve.py RUN_DIR agents/checkpoints/vmsched_training_curve.png
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(run_dir: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = sorted(Path(run_dir, "tb").glob("*"))
    if not logs:
        sys.exit(f"{run_dir}/tb: no TensorBoard log (train with logger=tensorboard)")
    ea = EventAccumulator(str(logs[0]))
    ea.Reload()

    def series(tag: str) -> tuple[np.ndarray, np.ndarray]:
        ev = ea.Scalars(tag)
        return np.array([e.step for e in ev]), np.array([e.value for e in ev])

    def smooth(y: np.ndarray, k: int = 10) -> np.ndarray:
        return np.convolve(y, np.ones(k) / k, mode="valid")

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6))
    x, y = series("eval/fragment_rate")
    ax0.plot(x, y, "o-", label="policy, greedy")
    ax0.set(xlabel="iteration (training snapshots)", ylabel="mean fragment rate",
            title="held-out generated M (seeds 1000-1002), MNL 50")
    ax0.axhline(0.334, color="grey", ls="--", label="vm_greedy (0.334)")
    ax0.legend()
    for tag, label in (("train/best_objective", "label (best of samples and rules)"),
                       ("train/mean_objective", "policy samples, mean")):
        x, y = series(tag)
        ax1.plot(x[9:], smooth(y), label=label)
    ax1.set(xlabel="iteration", ylabel="fragment rate (10-iteration mean)",
            title="training snapshots (140 PMs, MNL 25)")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
