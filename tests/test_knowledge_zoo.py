"""Paper 1's findings on the committed zoo VGG (Fashion-MNIST), on 100 images to stay bounded.

- the reliable ratio rises from the first analysed stage to the last;
- the knowledge-point count over training checkpoints rises early, then flattens;
- PGD moves the last stage's regional features far more than the first stage's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxaudit.analyses.knowledge import analyse_knowledge, default_layers
from onnxaudit.data import load_dataset
from onnxaudit.model import prepare_model

REPO = Path(__file__).resolve().parents[1]
VGG = REPO / "models/zoo/vgg.onnx"
SUBSET = REPO / "models/data/fashion-mnist-test-subset.npz"
CHECKPOINTS = [
    REPO / f"models/zoo/checkpoints/vgg-iter{it:05d}.onnx" for it in (0, 50, 200, 800, 2814)
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (VGG.exists() and SUBSET.exists() and all(p.exists() for p in CHECKPOINTS)),
        reason="the zoo is not built",
    ),
]


@pytest.fixture(scope="module")
def vgg():
    return prepare_model(VGG), load_dataset(SUBSET)


@pytest.fixture(scope="module")
def analysed(vgg):
    pm, dataset = vgg
    return analyse_knowledge(pm, dataset.subset(10, 0), seed=0, attack=True, device="cpu")


def test_reliable_ratio_rises_through_the_stages(analysed):
    ratios = [layer.reliable_ratio for layer in analysed.layers]
    assert len(ratios) == 4
    assert ratios[-1] > ratios[0] + 0.1
    assert analysed.sample.strength_uncertainty_corr < analysed.sample.pca_strength_uncertainty_corr


def test_pgd_moves_the_last_stage_far_more_than_the_first(analysed):
    first, last = analysed.adversarial.layers[0], analysed.adversarial.layers[-1]
    assert analysed.adversarial.success_rate > 0.5
    assert last.delta_orientation > 1.5 * first.delta_orientation  # 2.7x here, 1.8x on 500
    assert last.delta_strength > 1.3 * first.delta_strength


def test_knowledge_points_rise_early_then_flatten(vgg):
    pm, dataset = vgg
    layers = default_layers(pm.info)[-2:]  # the two deepest stages keep the test bounded
    result = analyse_knowledge(
        pm,
        dataset.subset(10, 0),
        layers=layers,
        seed=0,
        checkpoints=[prepare_model(p) for p in CHECKPOINTS],
        device="cpu",
    )
    e = result.emergence
    total = e.knowledge_points.sum(1)  # per checkpoint, summed over the layers
    iterations = np.array(e.iterations, float)
    assert total[0] == 0.0  # an untrained network has no knowledge points
    early = 2  # iteration 200, 7% of training
    assert total[early] >= 0.4 * total[-1]
    early_slope = (total[early] - total[0]) / (iterations[early] - iterations[0])
    late_slope = (total[-1] - total[early]) / (iterations[-1] - iterations[early])
    assert late_slope < 0.2 * early_slope
