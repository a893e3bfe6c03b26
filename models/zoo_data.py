"""The zoo's models and their data, for the tests and benches (numpy and onnxaudit only, no torch).

sys.path.insert(0, "models"); from zoo_data import zoo_models, model_data
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from onnxaudit.data import Dataset, load_dataset

REPO = Path(__file__).resolve().parent.parent
SUBSET = REPO / "models" / "data" / "fashion-mnist-test-subset.npz"


def zoo_models() -> dict[str, dict]:
    """Every model recorded in models/zoo.json: the base zoo and the extended one."""
    path = REPO / "models" / "zoo.json"
    zoo = json.loads(path.read_text()) if path.exists() else {}
    return {**zoo.get("models", {}), **zoo.get("extended", {})}


def zoo_split() -> dict[str, str]:
    """model name -> "calibration" | "held-out" (models/build_zoo.py zoo_split)."""
    return json.loads((REPO / "models" / "zoo.json").read_text())["split"]["models"]


def model_data(entry: dict, per_class: int | None, seed: int) -> Dataset:
    """The committed subset's images of the model's classes (relabelled 0..K-1 for the 4- and 2-class
    models), `per_class` of each drawn with `seed` (all when None)."""
    full = load_dataset(SUBSET)
    names = entry.get("classes") or full.classes
    index = [full.classes.index(n) for n in names]
    part = full.take(np.flatnonzero(np.isin(full.labels, index)))
    relabel = np.full(len(full.classes), -1)
    relabel[index] = np.arange(len(index))
    part = Dataset(relabel[part.labels], list(names), part.source, part.array, part.files)
    return part.subset(per_class, seed)
