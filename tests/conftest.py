"""Shared fixtures: a tiny real model with matching data, CLI runners, known analysis results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from graphs import small_cnn
from typer.testing import CliRunner

from onnxaudit import pipeline
from onnxaudit.cli import user_errors


def make_inputs(
    folder: Path, n: int = 12, model_seed: int = 0, name: str = "cnn"
) -> tuple[Path, Path]:
    """A 3-class 8x8 grey CNN (tests/graphs.small_cnn) and `n` random uint8 images with labels."""
    model = folder / f"{name}.onnx"
    onnx.save(small_cnn(seed=model_seed), model)
    data = folder / "data.npz"
    if not data.exists():
        rng = np.random.default_rng(0)
        np.savez(data, x=rng.integers(0, 256, (n, 8, 8), dtype=np.uint8), y=np.arange(n) % 3)
    return model, data


@pytest.fixture
def tiny_inputs(tmp_path: Path) -> tuple[Path, Path]:
    return make_inputs(tmp_path)


def cli(command) -> typer.Typer:
    """A one-command typer app with the real CLI's error handling, for CliRunner."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(user_errors(command))
    return app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@dataclass
class Section:
    """A hand-made analysis result (the AnalysisResult protocol: plain data with to_dict)."""

    data: dict

    def to_dict(self) -> dict:
        return self.data


@pytest.fixture
def fake_analyses(monkeypatch):
    """Replace the pipeline's analyses by known sections; `state` switches the backdoor verdict
    and robust accuracy, and records each call."""
    state = {"suspected": False, "robust": 0.4, "calls": []}

    def knowledge(pm, dataset, settings, seed, progress):
        layers = list(settings.layers) if settings.layers else None
        state["calls"].append(("knowledge", layers, len(dataset)))
        names = layers or [layer.name for layer in pm.info.layers]
        return Section({
            "layers": [
                {"name": n, "knowledge_points": 3.0, "reliable_knowledge_points": 2.4,
                 "reliable_ratio": 0.8}
                for n in names
            ]
        })  # fmt: skip

    def patterns(pm, dataset, settings, seed, progress):
        state["calls"].append(("patterns",))
        flagged = [1] if state["suspected"] else []
        return Section({
            "classes": [
                {"class": c, "name": pm.info.class_names[c], "predictive_power": 0.5,
                 "mask_l1": 0.1, "anomaly_index": 5.0 if c in flagged else 0.5}
                for c in range(pm.info.num_classes)
            ],
            "backdoor": {"suspected": state["suspected"], "classes": flagged},
        })  # fmt: skip

    def robustness(pm, dataset, settings, seed, progress):
        state["calls"].append(("robustness", settings.eps, settings.pgd_steps))
        return Section({"clean_accuracy": 0.9, "robust_accuracy": state["robust"],
                        "eps": settings.eps, "steps": settings.pgd_steps})  # fmt: skip

    for name, fake in (
        ("knowledge", knowledge),
        ("patterns", patterns),
        ("robustness", robustness),
    ):
        monkeypatch.setitem(pipeline.ANALYSES, name, fake)
    return state


TORCH_DEFAULT_SEED = 67280421310721


@pytest.fixture(scope="session")
def torch_export(tmp_path_factory):
    """`get(name, exporter, opset, softmax=False) -> (module, path)`: a tests/archs.py
    architecture (seed 0, 224x224, eval) exported once per session, so the gradient and intake
    corpora share their exports (dynamo takes 5-30 s per graph)."""
    torch = pytest.importorskip("torch")
    from archs import ARCHITECTURES, export, randomised

    folder = tmp_path_factory.mktemp("torch-exports")
    modules: dict[str, object] = {}
    paths: dict[tuple, Path] = {}

    def get(name: str, exporter: str, opset: int, softmax: bool = False):
        if exporter == "dynamo":
            pytest.importorskip("onnxscript")
        if name not in modules:
            # torch's default init draws from the global RNG, which torch seeds at random per
            # process (randomised keeps that init's scale): a fixed seed makes every module the
            # same in any process and test order
            torch.manual_seed(TORCH_DEFAULT_SEED)
            modules[name] = randomised(ARCHITECTURES[name]())
        key = (name, exporter, opset, softmax)
        if key not in paths:
            module = modules[name]
            if softmax:
                module = torch.nn.Sequential(module, torch.nn.Softmax(dim=1)).eval()
            file = folder / f"{name}-{exporter}-{opset}{'-softmax' if softmax else ''}.onnx"
            paths[key] = export(module, file, exporter, opset, (3, 224, 224))
        return modules[name], paths[key]

    return get
