"""Plot the training curve of a ``python scripts/train.py experiment=sls_jobshop_v2`` run from its
TensorBoard log: held-out mean gap to the trivial lower bound (greedy, the 17 generated Taillard-style
instances of the recipe, %) and the label / mean sampled makespan of the 10x10 training instances.

    python agents/checkpoints/jobshop_training_curve.py RUN_DIR agents/checkpoints/jobshop_training_curve.png [SHIPPED_GAP]

``SHIPPED_GAP``: the previous checkpoint's held-out gap (%), drawn as a reference line.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(run_dir: str, out: str, reference: float | None = None) -> None:
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

    def smooth(y: np.ndarray, k: int = 20) -> np.ndarray:
        return np.convolve(y, np.ones(k) / k, mode="valid")

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6))
    x, y = series("eval/gap_to_lb_pct")
    ax0.plot(x, y, "o-", label="candidate-attention policy, greedy")
    if reference is not None:
        ax0.axhline(reference, color="grey", ls="--", label=f"previous jobshop_gnn.pt ({reference:.2f})")
    ax0.set(xlabel="iteration (10x10 training instances)", ylabel="mean gap to lower bound (%)",
            title="17 held-out generated instances (15x15-100x20)")
    ax0.legend()
    for tag, label in (("train/best_objective", "label (best of 32 samples and 4 rules)"),
                       ("train/mean_objective", "policy samples, mean")):
        x, y = series(tag)
        ax1.plot(x[19:], smooth(y), label=label)
    ax1.set(xlabel="iteration", ylabel="makespan (20-iteration mean)", title="10x10 training instances")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) == 4 else None)
