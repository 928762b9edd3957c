"""Random feasible migrations: a uniformly random movable VM with a feasible target, then a uniformly
random feasible target, until the migration number limit (evacuations first)."""

from __future__ import annotations

import numpy as np

from schedgym.baselines.vm_common import Move, MovePolicy, candidate_vms
from schedgym.envs.vmsched.state import VMState


class VMRandomPolicy(MovePolicy):
    """Random feasible moves (seeded). Never stops early unless no VM can move."""

    name = "vm_random"

    def __init__(self, seed: int | None = 0):
        super().__init__()
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset_seed(self, seed: int) -> None:
        """Reseed per episode (the evaluation CLI calls this with the episode seed)."""
        self.rng = np.random.default_rng(seed if self.seed is None else (self.seed, seed))

    def rule(self, state: VMState) -> Move | None:
        mask, _ = candidate_vms(state)
        vms = np.flatnonzero(mask)
        if len(vms) == 0:
            return None
        v = int(self.rng.choice(vms))
        t = int(self.rng.choice(np.flatnonzero(state.target_mask(v).ravel())))
        return v, t // 2, t % 2
