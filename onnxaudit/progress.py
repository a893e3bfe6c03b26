"""The progress callback every long step reports through: (stage, done, total).

Analyses call it and never draw anything; the CLI turns it into progress bars with an ETA.
Stage names start with their analysis ("knowledge: layers", "patterns: search").
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]


def silent(stage: str, done: int, total: int) -> None:
    """The default callback: report nothing."""


def prefixed(progress: ProgressFn, prefix: str) -> ProgressFn:
    """A callback that names the model (or shard) before each stage."""
    return lambda stage, done, total: progress(f"{prefix}: {stage}", done, total)
