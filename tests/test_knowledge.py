"""Paper 1 estimators on constructions with known answers, and every gradient vs finite differences."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax

from onnxaudit.analyses.knowledge import (
    ImportanceWeights,
    KnowledgeSettings,
    LinearKappa,
    RegionEmbedding,
    SampleEmbedding,
    default_layers,
    radial_posterior,
    target_probs,
)
from onnxaudit.analyses.knowledge.adversarial import attack_types
from onnxaudit.analyses.knowledge.align import procrustes_rotation
from onnxaudit.analyses.knowledge.importance import expert_products, match_regions, sample_partners
from onnxaudit.analyses.knowledge.points import count_layer
from onnxaudit.analyses.knowledge.radial import unit

DISCRIMINATIVE = (0, 5, 10, 15)  # the diagonal of a 4 x 4 grid


def synthetic(n_per: int = 20, classes: int = 4, grid: int = 4, channels: int = 16, seed: int = 0):
    """Regions on the diagonal carry a class-specific channel; the rest is class-free noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    n, r = len(y), grid * grid
    f = np.abs(rng.normal(0, 0.3, (n, r, channels)))
    f[:, :, :classes] *= 0.1
    confidence = rng.uniform(0.5, 2.0, n)
    for region in DISCRIMINATIVE:
        f[:, region] = np.abs(rng.normal(0, 0.05, (n, channels)))
        f[np.arange(n), region, y] += 2.0 * confidence
    logits = 8.0 * confidence[:, None] * np.eye(classes)[y] + rng.normal(0, 0.3, (n, classes))
    sample_feature = np.concatenate(
        [f[:, list(DISCRIMINATIVE)].mean(1), rng.normal(0, 0.1, (n, 8))], axis=1
    )
    return f.astype(np.float32), sample_feature, logits, y


@pytest.fixture(scope="module")
def fitted():
    f, feature, logits, y = synthetic()
    probs = target_probs(logits)
    sample = SampleEmbedding(seed=0).fit(feature, probs)
    g = sample.transform(feature)
    importance = ImportanceWeights(partners=16, seed=0).fit(f, probs)
    region = RegionEmbedding().fit(f, g, importance)
    return f, feature, probs, y, sample, g, importance, region


def finite_difference(fun, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        grad[idx] = (fun(x + step) - fun(x - step)) / (2 * eps)
    return grad


def test_target_probs_use_temperature():
    logits = np.array([[4.0, 0.0, -4.0]])
    np.testing.assert_allclose(target_probs(logits, 4.0), softmax(logits / 4.0, axis=1))


def test_linear_kappa_ratio_and_its_derivative():
    kappa = LinearKappa(3.0, 10.0)
    norm = np.array([0.5, 2.0, 4.0, 7.0])  # two below, two above the clip at 10 / 3
    s, ds = kappa.ratio(norm)
    np.testing.assert_allclose(s * norm, kappa(norm))
    np.testing.assert_allclose(kappa(norm), [1.5, 6.0, 10.0, 10.0])
    numeric = (kappa.ratio(norm + 1e-6)[0] - kappa.ratio(norm - 1e-6)[0]) / 2e-6
    np.testing.assert_allclose(ds, numeric, rtol=1e-5, atol=1e-8)


def test_radial_posterior_is_softmax_of_scaled_projection_when_unclipped():
    rng = np.random.default_rng(1)
    e, mu = rng.normal(size=(5, 3)) * 0.3, unit(rng.normal(size=(4, 3)))
    log_pi = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    kappa = LinearKappa(2.0, 1000.0)  # kappa(l) cos = 2 mu . e exactly
    np.testing.assert_allclose(
        radial_posterior(e, mu, kappa, log_pi), softmax(2.0 * e @ mu.T + log_pi, axis=1)
    )


@pytest.mark.parametrize("init_std", [0.1, 3.0])  # unclipped and clipped kappa
def test_sample_objective_gradient(init_std):
    rng = np.random.default_rng(2)
    x, probs = rng.normal(size=(12, 5)), softmax(rng.normal(size=(12, 4)) * 2, axis=1)
    model = SampleEmbedding(weight_decay=1e-2)
    model.pi_ = probs.mean(0)
    m = rng.normal(0, init_std, (3, 5))
    _, grad = model._objective(m.ravel(), x, probs)
    numeric = finite_difference(lambda v: model._objective(v, x, probs)[0], m.ravel())
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_importance_gradient():
    rng = np.random.default_rng(3)
    f = rng.random((6, 5, 4)).astype(np.float32)
    model = ImportanceWeights(partners=4)
    model.kappa_m_ = model.kappa_match * 4
    fbar = unit(f.astype(np.float64))
    partners = sample_partners(6, 4, rng)
    matches = rng.integers(0, 5, (6, 4, 5))
    products = expert_products(fbar, partners, matches, slice(0, 6))
    targets = softmax(rng.normal(size=(6, 4)), axis=1)
    w, v = rng.random((6, 5)), rng.random((6, 4))
    _, grad_w, grad_v = model.loss_and_grad(w, v, products, targets)

    def total(wv):
        return model.loss_and_grad(wv[:, :5], wv[:, 5:], products, targets)[0].sum()

    numeric = finite_difference(total, np.concatenate([w, v], 1))
    np.testing.assert_allclose(grad_w, numeric[:, :5], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad_v, numeric[:, 5:], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kappa", [LinearKappa(1.0, 1000.0), LinearKappa(2.0, 1.5)])
def test_region_objective_gradient(kappa):
    rng = np.random.default_rng(4)
    f = rng.random((8, 6, 5)).astype(np.float32)
    importance = ImportanceWeights(partners=5, seed=0).fit(f, softmax(rng.normal(size=(8, 3)), 1))
    g = rng.normal(size=(8, 3))
    model = RegionEmbedding(kappa=kappa, weight_decay=1e-2, regions_per_sample=4)
    model.input_scale_ = 1.0
    lam = rng.normal(size=(3, 5))
    _, grad = model.loss_and_grad(lam, f, g, importance)
    numeric = finite_difference(lambda m: model.loss_and_grad(m, f, g, importance)[0], lam)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_match_regions_is_the_weighted_argmax():
    rng = np.random.default_rng(5)
    fbar = unit(rng.random((5, 7, 3)).astype(np.float32))
    partners, v = sample_partners(5, 3, rng), rng.random((5, 3)).astype(np.float32)
    got = match_regions(fbar, partners, v)
    for i in range(5):
        for s, j in enumerate(partners[i]):
            for r in range(7):
                scores = [(v[i] * fbar[i, r] * fbar[j, q]).sum() for q in range(7)]
                assert got[i, s, r] == int(np.argmax(scores))
    assert not np.any(partners == np.arange(5)[:, None])  # never its own partner


def test_sample_embedding_tracks_uncertainty(fitted):
    _, feature, probs, y, sample, g, _, _ = fitted
    assert np.mean(sample.predict_proba(feature).argmax(1) == y) == 1.0
    assert np.corrcoef(np.linalg.norm(g, axis=1), -(probs * np.log(probs)).sum(1))[0, 1] < -0.8
    np.testing.assert_allclose(np.linalg.norm(sample.mu_, axis=1), 1.0)
    np.testing.assert_allclose(sample.pi_, probs.mean(0))


def test_importance_prefers_discriminative_regions_for_confident_samples(fitted):
    _, _, probs, _, _, _, importance, _ = fitted
    confident = probs.max(1) > np.quantile(probs.max(1), 0.5)
    w = importance.w_[confident]
    others = np.setdiff1d(np.arange(16), DISCRIMINATIVE)
    assert w[:, list(DISCRIMINATIVE)].mean() > 1.5 * w[:, others].mean()
    np.testing.assert_allclose(importance.w_.sum(1), 1.0)
    np.testing.assert_allclose(importance.v_.sum(1), 1.0)


def test_knowledge_points_are_exactly_the_discriminative_regions(fitted):
    f, _, _, y, sample, _, _, region = fitted
    layer = count_layer("synthetic", region.transform(f), (4, 4), sample.mu_, sample.kappa, y)
    rate = layer.maps.reshape(len(y), 16).mean(0)
    others = np.setdiff1d(np.arange(16), DISCRIMINATIVE)
    assert rate[list(DISCRIMINATIVE)].min() > 0.9
    assert rate[others].max() < 0.05
    assert layer.reliable_ratio > 0.9
    assert layer.knowledge_points == pytest.approx(layer.maps.sum((1, 2)).mean())
    assert np.all(layer.reliable_maps <= layer.maps)


def test_region_strengths_are_in_sample_units(fitted):
    f, _, _, _, _, g, _, region = fitted
    h = region.transform(f)
    assert np.linalg.norm(h, axis=-1).mean() == pytest.approx(np.linalg.norm(g, axis=1).mean())


def test_fits_are_deterministic():
    f, feature, logits, _ = synthetic(n_per=6, seed=3)
    probs = target_probs(logits)

    def run():
        g = SampleEmbedding(seed=1).fit(feature, probs).transform(feature)
        importance = ImportanceWeights(partners=8, seed=1).fit(f, probs)
        return RegionEmbedding().fit(f, g, importance).transform(f)

    np.testing.assert_array_equal(run(), run())


def test_procrustes_recovers_a_rotation_despite_outliers():
    rng = np.random.default_rng(6)
    target = rng.normal(size=(60, 3))
    angle = 0.7
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    source = target @ rotation  # target = source @ R^T
    source[:4] = rng.normal(size=(4, 3)) * 5  # samples that changed between checkpoints
    found = procrustes_rotation(source, target, trim=0.1)
    np.testing.assert_allclose(found, rotation, atol=1e-8)
    assert np.linalg.det(found) == pytest.approx(1.0)


def test_attack_types_follow_the_authors_rules():
    mu = np.eye(3)
    h0 = np.array([[[2.0, 0, 0], [2.0, 0, 0], [0.1, 0, 0], [2.0, 0, 0], [0, 0, 2.0]]])
    mid = np.array([[[1.5, 1.5, 0], [0.2, 0.2, 0], [0, 0.5, 0], [1.0, 0, 0], [0, 0, 2.0]]])
    end = np.array([[[0, 3.0, 0], [0, 3.0, 0], [0, 3.0, 0], [0.5, 0, 0], [0, 0, 2.0]]])
    path = np.stack([h0, mid, end])
    counts = attack_types(h0, path, mu, LinearKappa(3.0, 10.0), np.array([0]), np.array([1]))
    assert list(counts.values()) == [1, 1, 1, 1]


def test_default_layers_take_each_stage_end_spread_over_four():
    class Layer:
        def __init__(self, name, size):
            self.name, self.height, self.width = name, size, size

    class Info:
        layers = [Layer(f"{s}-{k}", s) for s in (32, 16, 8, 4, 2) for k in range(3)]

    assert default_layers(Info()) == ["32-2", "16-2", "4-2", "2-2"]
    Info.layers = Info.layers[:6]
    assert default_layers(Info()) == ["32-2", "16-2"]


def test_settings_are_json_serialisable():
    doc = json.loads(json.dumps(KnowledgeSettings().to_dict()))
    assert doc["tau"] == 0.4 and doc["temperature"] == 4.0
    assert doc["sample_kappa"]["kappa_max"] == 10.0


def test_estimator_defaults_are_the_analysis_defaults():
    """`ImportanceWeights().fit` etc. on their own reproduce what an audit fits."""
    import inspect

    settings = KnowledgeSettings()

    def defaults(cls):
        return {
            name: p.default
            for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    importance, region, sample = (
        defaults(c) for c in (ImportanceWeights, RegionEmbedding, SampleEmbedding)
    )
    assert importance["partners"] == settings.partners
    assert importance["rematch_top"] == settings.regions_per_sample
    assert importance["steps"] == settings.importance_steps
    assert importance["kappa_p"] == settings.kappa_p
    assert region["max_iter"] == settings.region_max_iter
    assert region["regions_per_sample"] == settings.regions_per_sample
    assert region["lambda_align"] == settings.lambda_align
    assert sample["max_iter"] == settings.sample_max_iter
    assert sample["dim"] == region["dim"] == settings.dim
