"""The intake corpus checks every corpus model goes through (tests/test_intake_*.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from onnxaudit.analyses.knowledge import KnowledgeSettings, analyse_knowledge
from onnxaudit.cli import app
from onnxaudit.data import load_dataset
from onnxaudit.model import prepare_model

runner = CliRunner()
CPU = ("--device", "cpu")  # all cores: CI has two
SETTINGS = KnowledgeSettings(partners=2, sample_max_iter=20, region_max_iter=5)


def check_corpus_model(
    folder: Path,
    path: Path,
    reference: Callable[[np.ndarray], np.ndarray],
    options: Sequence[str] = (),
    images: int = 6,
    attack: bool = True,
) -> None:
    """`layers --json`, `extract --grid 7` of the first and last layer (logits against
    `reference` of the canonical images), a knowledge analysis and (`attack`) a short
    `onnxaudit attack`."""
    described = runner.invoke(app, ["layers", str(path), "--json", *options])
    assert described.exit_code == 0, described.output
    info = json.loads(described.output)
    layers = info["layers"]
    assert info["num_classes"] >= 2 and layers and info["logits_reason"]
    c, h, w = info["input_shape"]

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, h, w, c), dtype=np.uint8)
    data = folder / "data.npz"
    np.savez(data, x=x, y=np.arange(images) % 2)
    out = folder / "features.npz"
    chosen = f"0,{layers[-1]['index']}"
    args = ["extract", str(path), "-d", str(data), "-l", chosen, "--grid", "7", "-o", str(out)]
    result = runner.invoke(app, [*args, *options, *CPU])
    assert result.exit_code == 0, result.output
    canonical = load_dataset(data).images((c, h, w))
    with np.load(out) as features:
        for layer in (layers[0], layers[-1]):
            regions = min(7, layer["height"]) * min(7, layer["width"])
            assert features[layer["name"]].shape == (images, regions, layer["channels"])
        expected = reference(canonical)
        scale = max(1.0, float(np.abs(expected).max()))  # random deep graphs reach 1e5
        np.testing.assert_allclose(features["logits"], expected, rtol=1e-4, atol=1e-5 * scale)

    shape = tuple(int(v) for v in options[1].split(",")) if options else None
    prepared = prepare_model(path, input_shape=shape)
    knowledge = analyse_knowledge(
        prepared,
        load_dataset(data),
        layers=[layers[0]["name"], layers[-1]["name"]],
        device="cpu",
        settings=SETTINGS,
    )
    assert [layer.name for layer in knowledge.layers] == [layers[0]["name"], layers[-1]["name"]]
    assert all(np.isfinite(layer.knowledge_points) for layer in knowledge.layers)

    if not attack:
        return
    attacked = runner.invoke(app, ["attack", str(path), "-d", str(data), "--steps", "1",
                                   "--eps", "0.01", "--per-class", "1", *options, *CPU])  # fmt: skip
    assert attacked.exit_code == 0, attacked.output
    assert "robust" in attacked.output
