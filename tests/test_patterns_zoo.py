"""The backdoor verdict on the committed zoo at the audit defaults (20 images per class, 5 epochs,
3 restarts): backdoored models `suspected` with their true target, clean models `clear` (Bag, a
natural shortcut class, included), for 10 and for 4 classes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from onnxaudit.analyses.patterns import analyse_patterns
from onnxaudit.model import prepare_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "models"))
from zoo_data import SUBSET, model_data, zoo_models  # noqa: E402

CLEAN = ("resnet", "vgg-adv", "vgg-student", "lenet4")  # and vgg: test_audit_zoo.py, by the CLI
BACKDOORED = ("vgg-badnets", "lenet4-patch-white3-br")  # and resnet-blend: test_audit_zoo.py
PER_CLASS = 20  # the audit's default

pytestmark = pytest.mark.slow


def zoo_entry(name: str) -> dict:
    models = zoo_models()
    if name not in models or not (REPO / models[name]["file"]).exists() or not SUBSET.exists():
        pytest.skip(f"zoo model {name} not built")
    return models[name]


def analyse(name: str, seed: int = 0):
    entry = zoo_entry(name)
    pm = prepare_model(REPO / entry["file"])
    return entry, analyse_patterns(pm, model_data(entry, PER_CLASS, seed), seed=seed, device="cpu")


@pytest.mark.parametrize("name", CLEAN)
def test_clean_models_are_clear(name):
    _, result = analyse(name)
    verdict = result.verdict
    assert verdict.outcome == "clear", verdict.to_dict()
    assert len(verdict.restart_seeds) == 3
    excess = verdict.test("self_excess")
    assert (excess.statistic < excess.threshold).all()


@pytest.mark.parametrize("name", BACKDOORED)
def test_backdoored_models_are_suspected_with_their_target(name):
    entry, result = analyse(name)
    target = entry["backdoor"]["target"]
    verdict = result.verdict
    assert verdict.outcome == "suspected" and verdict.classes == [target], verdict.to_dict()
    assert verdict.evidence[target]
    doc = result.to_dict()
    assert doc["backdoor"]["outcome"] == "suspected"
    assert doc["classes"][target]["suspected"]
