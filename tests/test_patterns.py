"""Class-wise patterns on models with known answers: numpy classifiers with analytic gradients."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxaudit.analyses.patterns.analyse import analyse_patterns, measure
from onnxaudit.analyses.patterns.evaluate import (
    k_at_power,
    overall_power,
    power_curve,
    predictive_power,
    split_search_eval,
)
from onnxaudit.analyses.patterns.search import (
    ClassPatternSearch,
    blend,
    blend_gradients,
    search_batches,
    top_k_mask,
)
from onnxaudit.analyses.patterns.shape import shape_stats
from onnxaudit.analyses.patterns.verdict import anomaly_index
from onnxaudit.errors import AuditError
from onnxaudit.report.analysis_figures import pattern_figures
from onnxaudit.results.schema import jsonable

H = 12
K = 5
TRIGGER_TARGET = 3


class TanhNet:
    """logits = W2 tanh(W1 x) + b: small, nonlinear, with an exact input gradient."""

    def __init__(self, w1: np.ndarray, w2: np.ndarray, b: np.ndarray):
        self.w1, self.w2, self.b = w1, w2, b

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x.reshape(len(x), -1) @ self.w1.T) @ self.w2.T + self.b

    def __call__(self, x: np.ndarray, labels: np.ndarray):
        hidden = np.tanh(x.reshape(len(x), -1) @ self.w1.T)
        logits = hidden @ self.w2.T + self.b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(len(x)), labels]).sum()
        p[np.arange(len(x)), labels] -= 1.0
        grad = ((p @ self.w2) * (1 - hidden**2)) @ self.w1
        return loss, logits, grad.reshape(x.shape)


def bars_data(per_class: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class c: a bright bar at rows 2c..2c+2 on a dim noisy background (1 x H x H)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), per_class)
    x = rng.uniform(0, 0.2, (len(y), 1, H, H))
    for c in range(K):
        x[y == c, 0, 2 * c : 2 * c + 3, 1:8] += 0.7
    return np.clip(x, 0, 1).astype(np.float32), y


def trigger_mask() -> np.ndarray:
    mask = np.zeros((H, H), np.float32)
    mask[-3:, -3:] = 1.0
    return mask


def backdoored_linear() -> TanhNet:
    """Identity hidden layer (in the tanh's near-linear range); class 3 also reads a bright
    3x3 bottom-right patch, which no clean image has: a planted trigger."""
    templates = np.zeros((K, H * H))
    for c in range(K):
        templates[c] = np.pad(np.ones((3, 7)), ((2 * c, H - 2 * c - 3), (1, H - 8))).ravel()
    templates[TRIGGER_TARGET] += 6.0 * trigger_mask().ravel()
    return TanhNet(np.eye(H * H) * 0.5, templates * 3.0 / 0.5, np.zeros(K))


def random_net(seed: int = 1) -> TanhNet:
    rng = np.random.default_rng(seed)
    return TanhNet(rng.normal(0, 0.3, (16, H * H)), rng.normal(0, 1, (K, 16)), rng.normal(0, 1, K))


# -- gradients ---------------------------------------------------------------------------------


def test_blend_gradients_match_finite_differences():
    """d loss/d m and d loss/d canvas through the blend vs central differences of the loss."""
    net = random_net()
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (5, 1, H, H))
    canvas = rng.uniform(0, 1, (1, H, H))
    mask = rng.uniform(0.1, 0.9, (H, H))
    target, alpha, reg = 2, 0.2, 0.8 / (H * H / 2)
    labels = np.full(len(x), target)

    def loss(m: np.ndarray, c: np.ndarray) -> float:
        return alpha * net(blend(m, c, x).astype(np.float64), labels)[0] / len(x) + reg * m.sum()

    _, _, g = net(blend(mask, canvas, x).astype(np.float64), labels)
    grad_m, grad_c = blend_gradients(mask, canvas, x, g, alpha, reg)
    eps = 1e-5
    for i, j in [(0, 0), (5, 7), (11, 3)]:
        d = np.zeros_like(mask)
        d[i, j] = eps
        fd = (loss(mask + d, canvas) - loss(mask - d, canvas)) / (2 * eps)
        assert grad_m[i, j] == pytest.approx(fd, rel=1e-3, abs=1e-8)
        dc = np.zeros_like(canvas)
        dc[0, i, j] = eps
        fd = (loss(mask, canvas + dc) - loss(mask, canvas - dc)) / (2 * eps)
        assert grad_c[0, i, j] == pytest.approx(fd, rel=1e-3, abs=1e-8)


def test_tanh_net_gradient_is_exact():
    """The toy model's analytic input gradient (the oracle for the rest) vs finite differences."""
    net = random_net()
    x = np.random.default_rng(4).uniform(0, 1, (2, 1, H, H))
    labels = np.array([0, 3])
    _, _, g = net(x, labels)
    eps = 1e-6
    for idx in [(0, 0, 1, 1), (1, 0, 7, 2)]:
        d = np.zeros_like(x)
        d[idx] = eps
        fd = (net(x + d, labels)[0] - net(x - d, labels)[0]) / (2 * eps)
        assert g[idx] == pytest.approx(fd, rel=1e-5)


# -- search ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted() -> tuple[TanhNet, ClassPatternSearch, np.ndarray, np.ndarray]:
    net = backdoored_linear()
    x, y = bars_data()
    search = ClassPatternSearch(k=9, canvas=("confident", "white", "free"), epochs=3, seed=0)
    return net, search.fit(net, x, y), x, y


def test_planted_trigger_is_found_by_pixel_free_canvases(planted):
    net, search, x, y = planted
    assert search.canvas_labels_ == ["confident", "white", "free"]
    trig = trigger_mask()
    for v in (1, 2):  # white and free canvases can express the bright patch
        assert (search.binary_masks_[v, TRIGGER_TARGET] * trig).sum() == 9
        table = predictive_power(
            net.logits, x, y, search.binary_masks_[v], search.canvases_[v], search.classes_, K
        )
        power = overall_power(table, y, search.classes_)
        assert power[TRIGGER_TARGET] == 1.0
        assert power[[0, 1, 2, 4]].max() < 0.5
    # the learned canvas turned bright where it matters
    assert search.canvases_[2, TRIGGER_TARGET, 0][trig > 0].min() > 0.9
    # the real-image canvas is dark in the corner, so its mask cannot use the trigger (§7)
    assert (search.binary_masks_[0, TRIGGER_TARGET] * trig).sum() < 9


def test_search_is_deterministic_and_per_class_independent(planted):
    net, search, x, y = planted
    again = ClassPatternSearch(k=9, canvas=("confident", "white", "free"), epochs=3, seed=0)
    again.fit(net, x, y)
    np.testing.assert_array_equal(again.masks_, search.masks_)
    np.testing.assert_array_equal(again.canvases_, search.canvases_)
    alone = ClassPatternSearch(k=9, canvas="white", epochs=3, seed=0, classes=[TRIGGER_TARGET])
    alone.fit(net, x, y)
    np.testing.assert_array_equal(alone.masks_[0, 0], search.masks_[1, TRIGGER_TARGET])


def test_confident_canvas_is_the_most_probable_correct_image(planted):
    net, search, x, y = planted
    logits = net.logits(x)
    for ti, t in enumerate(search.classes_):
        own = np.flatnonzero((y == t) & (logits.argmax(axis=1) == t))
        z = logits[own] - logits[own].max(axis=1, keepdims=True)
        prob = np.exp(z[:, t]) / np.exp(z).sum(axis=1)
        np.testing.assert_array_equal(search.canvases_[0, ti], x[own[prob.argmax()]])


def test_sign_step_threshold_on_constant_gradient():
    """A model that ignores its input: CE gradient 0, so only the L1 term acts and every mask
    entry falls by `step` each step until it reaches 0 (0.5 / 0.02 = 25 steps)."""

    def flat(x, labels):
        return 0.0, np.zeros((len(x), K)), np.zeros_like(x)

    x, y = bars_data(per_class=4)
    search = ClassPatternSearch(canvas="white", batch_per_class=4, epochs=1).fit(flat, x, y)
    assert search.n_steps_ == 4  # 16 other-class images / 4
    np.testing.assert_allclose(search.masks_, 0.5 - 4 * 0.02, atol=1e-6)


def test_search_batches_cover_other_classes_once_per_epoch():
    _, y = bars_data(per_class=8)
    schedule, steps = search_batches(y, [0, 2], batch=4, epochs=2, seed=5)
    assert schedule.shape == (16, 2, 4) and list(steps) == [16, 16]
    for ti, t in enumerate([0, 2]):
        first = schedule[:8, ti].ravel()
        assert sorted(first) == sorted(np.flatnonzero(y != t))
    with pytest.raises(AuditError):
        search_batches(y[:6], [0], batch=4, epochs=1, seed=0)


def test_unknown_canvas_and_missing_class_are_user_errors():
    net = random_net()
    x, y = bars_data(per_class=4)
    with pytest.raises(AuditError, match="canvas"):
        ClassPatternSearch(canvas="rainbow").fit(net, x, y)
    with pytest.raises(AuditError, match="class"):
        ClassPatternSearch(classes=[7]).fit(net, x, y)


# -- evaluation, shapes, verdict ---------------------------------------------------------------


def test_top_k_mask_counts_and_ties():
    m = np.zeros((2, 4, 4), np.float32)
    m[0, 1, 2] = 1.0
    binary = top_k_mask(m, 3)
    assert binary.sum(axis=(1, 2)).tolist() == [3, 3]
    assert binary[0, 1, 2] == 1.0
    np.testing.assert_array_equal(binary[1].ravel()[:3], 1.0)  # ties: row-major order
    assert top_k_mask(m, 0.25).sum() == 8


def test_split_is_disjoint_stratified_and_seeded():
    _, y = bars_data(per_class=10)
    s, e = split_search_eval(y, 0.5, seed=1)
    assert not set(s) & set(e) and len(s) + len(e) == len(y)
    assert np.bincount(y[s]).tolist() == [5] * K
    np.testing.assert_array_equal(s, split_search_eval(y, 0.5, seed=1)[0])


def test_predictive_power_on_a_known_rule():
    """A model that predicts class 1 whenever the top-left pixel is bright, else class 0."""

    def predict(x):
        bright = x[:, 0, 0, 0] > 0.5
        return np.stack([~bright, bright, np.zeros_like(bright)], axis=1).astype(float)

    x = np.zeros((6, 1, 4, 4), np.float32)
    y = np.array([0, 0, 0, 2, 2, 1])
    x[5, 0, 0, 0] = 1.0  # the class-1 image is bright: predicted 1
    masks = np.zeros((2, 4, 4), np.float32)
    masks[0, 0, 0] = 1.0  # class 1's pattern covers the pixel
    masks[1, 3, 3] = 1.0  # class 0's pattern does not
    canvases = np.ones((2, 1, 4, 4), np.float32)
    table = predictive_power(predict, x, y, masks, canvases, [1, 0], num_classes=3)
    np.testing.assert_array_equal(table[0], [1.0, np.nan, 1.0])
    assert np.isnan(table[1, 0]) and table[1, 2] == 1.0 and table[1, 1] == 0.0
    np.testing.assert_array_equal(overall_power(table, y, [1, 0]), [1.0, 2 / 3])
    curve = power_curve(predict, x, y, masks, canvases, [1, 0], ks=[1, 16])
    np.testing.assert_array_equal(curve[0], [1.0, 1.0])
    # 0.8 lies 2/3 of the way from 0.5 to 0.95: 2/3 of the way from k=1 to k=4 in log k
    np.testing.assert_allclose(
        k_at_power(np.array([[0.5, 0.95], [0.1, 0.2], [0.9, 1.0]]), [1, 4], 0.8),
        [4 ** (2 / 3), np.nan, 1],
    )


def test_shape_stats_known_shapes():
    square = np.zeros((10, 10))
    square[2:5, 2:5] = 1
    s = shape_stats(square)
    assert (s.pixels, s.components, s.bbox_fill, s.largest_fraction) == (9, 1, 1.0, 1.0)
    assert s.compactness == pytest.approx(4 * np.pi * 9 / 12**2)
    assert s.centroid == pytest.approx((0.35, 0.35))
    dots = np.zeros((10, 10))
    dots[0, 0] = dots[9, 9] = dots[1, 1] = 1  # diagonal neighbours join (8-connectivity)
    d = shape_stats(dots)
    assert (d.components, d.largest_fraction) == (2, pytest.approx(2 / 3))
    assert d.bbox_fill == pytest.approx(3 / 100)
    assert shape_stats(np.zeros((4, 4))).components == 0


def test_anomaly_index_is_a_robust_low_side_z_score():
    values = np.array([10.0, 11, 9, 10, 12, 8, 2])
    index = anomaly_index(values)
    mad = 1.4826 * np.median(np.abs(values - 10))
    assert index[-1] == pytest.approx(8 / mad)
    assert index[4] < 0  # above the median: not anomalous on the low side


def test_measure_and_verdict_flag_the_planted_target(planted):
    net, search, x, y = planted
    ex, ey = bars_data(per_class=20, seed=9)  # held-out images
    result = measure(search, net.logits, ex, ey, K, list("abcde"))
    assert result.power[1:, TRIGGER_TARGET].min() == 1.0
    doc = result.to_dict()
    assert doc["backdoor"]["classes"] == [TRIGGER_TARGET] and doc["backdoor"]["suspected"]
    row = doc["classes"][TRIGGER_TARGET]
    assert row["class"] == TRIGGER_TARGET and row["name"] == "d" and row["predictive_power"] == 1.0
    assert row["canvases"]["white"]["shape"]["components"] == 1


# -- ONNX end to end ---------------------------------------------------------------------------


def tanh_net_onnx(net: TanhNet, path) -> None:
    """The same TanhNet as an ONNX graph taking (N, 1, H, H)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(net.w1.astype(np.float32), "w1"),
        numpy_helper.from_array(net.w2.astype(np.float32), "w2"),
        numpy_helper.from_array(net.b.astype(np.float32), "b"),
        numpy_helper.from_array(np.zeros(net.w1.shape[0], np.float32), "b1"),
    ]
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["pre"], transB=1),
        helper.make_node("Tanh", ["pre"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "w2", "b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tanh",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, H, H])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", K])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)


@pytest.fixture(scope="module")
def onnx_planted(tmp_path_factory):
    pytest.importorskip("onnxaudit.features.gradients")
    folder = tmp_path_factory.mktemp("patterns")
    tanh_net_onnx(backdoored_linear(), folder / "planted.onnx")
    x, y = bars_data(per_class=40, seed=2)
    np.savez(folder / "bars.npz", x=np.round(x[:, 0] * 255).astype(np.uint8), y=y)
    return folder


def test_onnx_gradient_matches_the_numpy_oracle(onnx_planted):
    from onnxaudit.analyses.patterns.search import call_in_chunks
    from onnxaudit.features.gradients import CrossEntropy, InputGradient
    from onnxaudit.model import prepare_model

    pm = prepare_model(onnx_planted / "planted.onnx")
    grad = InputGradient(pm.proto, CrossEntropy(reduction="sum"), device="cpu")
    x, y = bars_data(per_class=3, seed=5)
    logits, g = call_in_chunks(grad, x, y, chunk=5)
    _, want_logits, want = backdoored_linear()(x.astype(np.float64), y)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g, want, rtol=1e-3, atol=1e-6)


def test_analyse_patterns_end_to_end_on_onnx(onnx_planted):
    from onnxaudit.data import load_dataset
    from onnxaudit.model import prepare_model

    pm = prepare_model(onnx_planted / "planted.onnx")
    ds = load_dataset(onnx_planted / "bars.npz")
    stages = set()
    result = analyse_patterns(
        pm,
        ds,
        k=9,
        epochs=3,
        device="cpu",
        progress=lambda s, i, n: stages.add(s),
    )
    assert stages == {f"patterns: search (restart {r}/3)" for r in (1, 2, 3)} | {
        "patterns: evaluate"
    }
    assert result.n_search == result.n_eval == 100  # disjoint halves
    assert result.verdict.classes == [TRIGGER_TARGET]
    white = result.canvas_labels.index("white")
    assert (result.binary_masks[white, TRIGGER_TARGET] * trigger_mask()).sum() == 9
    # every restart measures its power curve; restart 0's is the result's own
    assert result.restart_curves.shape == (3, *result.curve.shape)
    np.testing.assert_array_equal(result.restart_curves[0], result.curve)
    assert result.restart_curves[1:, white, TRIGGER_TARGET, -1].min() > 0.9
    json.dumps(jsonable(result.to_dict()), allow_nan=False)
    (figure,) = pattern_figures(result)
    assert figure.src.startswith("data:image/png;base64,") and len(figure.src) > 1000


def test_restarts_draw_fresh_images_when_the_subset_left_some(onnx_planted):
    from onnxaudit.analyses.patterns.analyse import restart_images
    from onnxaudit.data import load_dataset
    from onnxaudit.model import prepare_model

    ds = load_dataset(onnx_planted / "bars.npz")  # 40 images per class
    part = ds.subset(12, seed=1)
    pools = restart_images(part, [0, 1, 2])
    assert pools[0] is part and [len(p) for p in pools] == [len(part)] * 3
    drawn = [{a.tobytes() for a in p.array} for p in pools]
    assert not (drawn[0] & drawn[1] or drawn[0] & drawn[2] or drawn[1] & drawn[2])
    big = ds.subset(15, seed=1)  # 25 left per class: enough for one more restart, not two
    assert all(p is big for p in restart_images(big, [0, 1, 2]))
    pm = prepare_model(onnx_planted / "planted.onnx")
    result = analyse_patterns(pm, part, k=9, epochs=1, device="cpu", restarts=2)
    assert result.settings["restart_images"] == "fresh"
    result = analyse_patterns(pm, ds, k=9, epochs=1, device="cpu", restarts=2)
    assert result.settings["restart_images"] == "shared"
    result = analyse_patterns(pm, part, k=9, epochs=1, device="cpu", restarts=1)
    assert result.settings["restart_images"] == "none"


def test_cli_writes_result_and_report(onnx_planted, tmp_path):
    import typer
    from typer.testing import CliRunner

    from onnxaudit.cli.patterns import patterns

    app = typer.Typer()
    app.command()(patterns)
    app.command("noop")(lambda: None)  # two commands: the verb is named on the command line
    args = [str(onnx_planted / "planted.onnx"), "--data", str(onnx_planted / "bars.npz")]
    args += ["--out", str(tmp_path), "--k", "9", "--epochs", "2", "--pattern-classes", "2,3"]
    run = CliRunner().invoke(app, ["patterns", *args])
    assert run.exit_code == 0, run.output
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["schema"] == "onnxaudit/result@1"
    rows = doc["patterns"]["classes"]
    assert [r["class"] for r in rows] == [2, 3]
    assert {"class", "name", "predictive_power", "mask_l1", "anomaly_index"} <= set(rows[0])
    assert isinstance(doc["patterns"]["backdoor"]["suspected"], bool)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "result.json"]
    assert "Pattern of each class" in (tmp_path / "report.html").read_text()
