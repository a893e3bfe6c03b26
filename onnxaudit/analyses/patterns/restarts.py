"""Seeds of the verdict's restarts, and how restarts are summarised.

One run takes an int seed or a numpy SeedSequence / Generator (the pipeline spawns one per
purpose); each restart gets its own int seed for the search's split, batches and noise.
"""

from __future__ import annotations

import numpy as np

from onnxaudit.seeds import as_int, child

SeedLike = int | np.integer | np.random.SeedSequence | np.random.Generator


def restart_seeds(seed: SeedLike, n: int) -> list[int]:
    """`n` int seeds. An int seed is kept as the first (restart 0 reproduces a single search with
    that seed); the others are spawned from it."""
    if isinstance(seed, np.random.Generator):
        seed = np.random.SeedSequence(int(seed.integers(2**63)))
    if isinstance(seed, np.random.SeedSequence):
        return [as_int(child(seed, i)) for i in range(n)]  # stateless: same for every call
    first = int(seed)
    return [first, *(as_int(child(first, i)) for i in range(n - 1))][:n]


def spread(values: np.ndarray) -> np.ndarray:
    """(T,) max - min over restarts of (R, T) values: how much one restart could differ."""
    values = np.asarray(values, dtype=float)
    return values.max(axis=0) - values.min(axis=0)
