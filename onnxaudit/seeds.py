"""One `numpy.random.SeedSequence` per run, spawned per purpose, so no two random choices share a
stream (the data subset, the search/evaluation split, each search, each fit).

Children are derived by spawn key rather than by `SeedSequence.spawn` (which counts how often it
was called): the stream of a purpose depends only on the run's seed and the purpose's position,
so analyses can be run alone, in any order, or on another process and draw the same numbers.
"""

from __future__ import annotations

import numpy as np

Seed = int | np.random.SeedSequence

# The run's top-level purposes, in spawn-key order. Append only: reordering changes every result.
PURPOSES = ("subset", "knowledge", "patterns", "robustness", "knowledge-subset")


def as_sequence(seed: Seed) -> np.random.SeedSequence:
    """An int becomes the root SeedSequence of a run; a SeedSequence is kept as it is."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(int(seed))


def child(seed: Seed, index: int) -> np.random.SeedSequence:
    """The `index`-th spawned child of `seed`, the same however often it is asked for."""
    parent = as_sequence(seed)
    return np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, int(index)))


def purpose(seed: Seed, name: str) -> np.random.SeedSequence:
    """The stream of one of the run's PURPOSES."""
    return child(seed, PURPOSES.index(name))


def as_int(seed: Seed) -> int:
    """A 32-bit integer drawn from `seed`, for APIs that combine seeds arithmetically."""
    return int(as_sequence(seed).generate_state(1)[0])


def record(seed: Seed) -> dict[str, object]:
    """One stream's identity for result.json: the run's entropy and the stream's spawn key."""
    seq = as_sequence(seed)
    return {"entropy": int(seq.entropy), "spawn_key": list(seq.spawn_key)}


def describe(seed: Seed) -> dict[str, object]:
    """How the run's streams were made, for result.json: root entropy and the spawn key of each
    purpose."""
    root = as_sequence(seed)
    return {
        "entropy": int(root.entropy),
        "spawn_keys": {name: list(purpose(root, name).spawn_key) for name in PURPOSES},
    }
