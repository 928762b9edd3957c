"""The Gymnasium base class every schedgym env derives from.

:class:`SchedEnv` owns what the domains' adapters used to repeat: the render-mode check, the episode
bookkeeping (``step()`` needs a running episode: not before the first ``reset()``, not after the
episode ended, not after a ``reset()`` that raised; each raises :class:`ResetNeededError` with the
reason), the info fields every env shares (``action_mask``, ``invalid_action``, ``instance``, the
domain's own fields, then ``solution`` and ``metrics`` once the episode's solution is complete) and
render dispatch to the domain's viewer.

A domain implements the hooks: :meth:`SchedEnv._start_episode` (pick and load the instance, build the
state), :meth:`SchedEnv._apply` (one action; returns a :class:`StepOutcome`),
:meth:`SchedEnv._observation`, :meth:`SchedEnv._action_mask`, :meth:`SchedEnv._domain_info`,
:meth:`SchedEnv._final_solution`, :meth:`SchedEnv._metrics` and :meth:`SchedEnv._render_rgb`.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from schedgym.envs.core.errors import ResetNeededError
from schedgym.envs.core.sources import check_render_mode


class EpisodeState(enum.Enum):
    """Where an env stands between ``reset()`` and ``step()`` calls."""

    NOT_RESET = "the env has not been reset yet"
    RUNNING = "an episode is running"
    ENDED = "the episode has ended (terminated or truncated)"
    RESET_FAILED = "the last reset() raised an error, so there is no episode to continue"


class StepOutcome(NamedTuple):
    """What one action did: the reward (the domain's units, see its env docstring), the episode-end
    flags and whether the action was invalid (a no-op)."""

    reward: float
    terminated: bool
    truncated: bool
    invalid: bool


class SchedEnv(gym.Env):
    """Base of the schedgym envs (see the module docstring).

    Args:
        render_mode: ``None`` or one of ``metadata["render_modes"]``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None) -> None:
        check_render_mode(render_mode, self.metadata)
        self.render_mode = render_mode
        self.instance: Any = None
        self.episode_state = EpisodeState.NOT_RESET

    # ------------------------------------------------------------------------------------------
    # episode control
    # ------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode (Gymnasium API). Until it succeeds the env has no episode: if loading the
        instance or building the state raises, ``step()`` raises :class:`ResetNeededError` instead
        of continuing the previous episode."""
        super().reset(seed=seed)
        self.episode_state = EpisodeState.RESET_FAILED
        self._start_episode(options or {})
        obs, info = self._observation(), self._info(invalid=False)
        self.episode_state = EpisodeState.RUNNING
        return obs, info

    def step(self, action):
        """One decision (Gymnasium API); raises :class:`ResetNeededError` when no episode is running."""
        self._require(EpisodeState.RUNNING, call="step()")
        out = self._apply(action)
        if out.terminated or out.truncated:
            self.episode_state = EpisodeState.ENDED
        return self._observation(), out.reward, out.terminated, out.truncated, self._info(invalid=out.invalid)

    def action_masks(self) -> np.ndarray:
        """(A,) bool mask of valid actions (sb3-contrib's MaskablePPO calls this); also available
        once the episode has ended."""
        self._require(EpisodeState.RUNNING, EpisodeState.ENDED, call="action_masks()")
        return self._action_mask()

    def render(self):
        """``rgb_array`` mode: an (H, W, 3) uint8 picture of the current episode; else ``None``."""
        if self.render_mode != "rgb_array" or not self.has_episode:
            return None
        return self._render_rgb()

    @property
    def has_episode(self) -> bool:
        """True while an episode is running or after it ended (its state can still be read)."""
        return self.episode_state in (EpisodeState.RUNNING, EpisodeState.ENDED)

    def _require(self, *allowed: EpisodeState, call: str) -> None:
        if self.episode_state not in allowed:
            raise ResetNeededError(call, self.episode_state.value)

    # ------------------------------------------------------------------------------------------
    # info shared by every env
    # ------------------------------------------------------------------------------------------
    def _info(self, invalid: bool) -> dict[str, Any]:
        """``action_mask``, ``invalid_action``, ``instance``, the domain's fields, then ``solution``
        and ``metrics`` once the solution is complete."""
        info: dict[str, Any] = {"action_mask": self._action_mask(), "invalid_action": invalid,
                                "instance": self.instance.name}
        info.update(self._domain_info())
        solution = self._final_solution()
        if solution is not None:
            info["solution"] = solution
            info["metrics"] = self._metrics(solution)
        return info

    # ------------------------------------------------------------------------------------------
    # hooks of the domains
    # ------------------------------------------------------------------------------------------
    def _start_episode(self, options: dict[str, Any]) -> None:
        """Pick the instance (``options["instance"]`` first), check it fits, build the state."""
        raise NotImplementedError

    def _apply(self, action: Any) -> StepOutcome:
        """Apply one action to the state (an invalid one is a no-op)."""
        raise NotImplementedError

    def _observation(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _action_mask(self) -> np.ndarray:
        """(A,) bool mask of the current state (a fresh array)."""
        raise NotImplementedError

    def _domain_info(self) -> dict[str, Any]:
        """The domain's own info fields (e.g. the current time)."""
        return {}

    def _final_solution(self) -> Any | None:
        """The complete solution once the episode is over, else ``None``."""
        raise NotImplementedError

    def _metrics(self, solution: Any) -> dict[str, float]:
        """The domain's metrics of a complete solution."""
        raise NotImplementedError

    def _render_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 picture from the domain's viewer."""
        raise NotImplementedError
