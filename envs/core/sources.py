"""Where an env's instances come from: a fixed list (names, files or objects) or a generator, and the
padded sizes that fit all of them. Shared by the job-shop, GPU-DAG and VM environments."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def load_instances(instance: Any, load: Callable[[Any], Any]) -> list[Any]:
    """``instance`` as a list of loaded instances: ``None`` gives ``[]``, a list or tuple loads each
    element, anything else (name, path or instance object) loads as one."""
    if isinstance(instance, (list, tuple)):
        return [load(i) for i in instance]
    if instance is not None:
        return [load(instance)]
    return []


def padded_sizes(instances: Sequence[Any], generator: Callable[[np.random.Generator], Any],
                 sizes: Callable[[Any], tuple[int, ...]], explicit: Sequence[int | None]) -> tuple[int, ...]:
    """Padded sizes of an env: each ``explicit`` value when given, else the maximum over
    ``instances`` (``sizes(instance)``), else ``generator.size_bounds()``, else the sizes of one
    instance the generator draws with seed 0."""
    if instances:
        bounds = [sizes(i) for i in instances]
    elif hasattr(generator, "size_bounds"):
        bounds = [tuple(generator.size_bounds())]
    else:
        bounds = [sizes(generator(np.random.default_rng(0)))]
    return tuple(int(e or max(b[k] for b in bounds)) for k, e in enumerate(explicit))


def check_render_mode(render_mode: str | None, metadata: dict[str, Any]) -> None:
    """A clear error for a render mode the env does not offer."""
    modes = metadata.get("render_modes", [])
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode must be None or one of {modes}, got {render_mode!r}")


def expand_names(spec: str | Sequence[str], sets: dict[str, list[str]], is_instance: Callable[[str], bool],
                 kind: str, known: Sequence[str]) -> list[str]:
    """Expand a set name, or a list of set names and instance names, into instance names.

    ``is_instance(name)`` accepts a single instance (catalogue name, file path, generator name);
    anything else raises :class:`UnknownNameError` listing the closest of ``sets`` and ``known``.
    """
    from schedgym.envs.core.errors import UnknownNameError

    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in map(str, items):
        if item in sets:
            out.extend(sets[item])
        elif is_instance(item):
            out.append(item)
        else:
            raise UnknownNameError(kind, item, list(sets) + list(known))
    return out
