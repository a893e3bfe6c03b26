"""PGD against constructions with known answers, and the zoo's clean vs adversarially trained vgg."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxaudit.analyses.robustness import RobustnessResult, pgd, robustness
from onnxaudit.errors import AuditError
from onnxaudit.features.gradients import CrossEntropy, InputGradient, VectorJacobian

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT / "models" / "data" / "fashion-mnist-test-subset.npz"
RNG = np.random.default_rng(3)


def linear_classifier(weight: np.ndarray) -> onnx.ModelProto:
    """logits = flatten(x) W^T on (N, 1, 2, 2) images: its CE gradient sign is known exactly."""
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w"], ["logits"], transB=1),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(weight)])],
        [numpy_helper.from_array(weight.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


W2 = np.asarray([[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, 1.5, -0.5]])  # two classes
X = RNG.uniform(0.3, 0.7, size=(40, 1, 2, 2)).astype(np.float32)  # clipping never binds
Y = RNG.integers(0, 2, size=40)


def test_untargeted_pgd_reaches_the_exact_worst_case_of_a_linear_model() -> None:
    """Two-class linear logits: the CE ascent direction is sign(w_other - w_true), always."""
    grad = InputGradient(linear_classifier(W2), device="cpu")
    x_adv = pgd(grad, X, Y, eps=0.05, steps=10)
    delta = W2[1 - Y] - W2[Y]
    expected = X + 0.05 * np.sign(delta).reshape(X.shape)
    np.testing.assert_allclose(x_adv, expected, atol=1e-6)


def test_targeted_pgd_descends_toward_the_target() -> None:
    grad = InputGradient(linear_classifier(W2), CrossEntropy(targeted=True), device="cpu")
    target = 1 - Y
    x_adv = pgd(grad, X, target, eps=0.05, steps=10)  # targeted=None: from the objective
    expected = X + 0.05 * np.sign(W2[target] - W2[Y]).reshape(X.shape)
    np.testing.assert_allclose(x_adv, expected, atol=1e-6)
    before, after = grad(X, target).loss, grad(x_adv, target).loss
    assert after < before


def test_projection_clip_seed_and_callback() -> None:
    weight = RNG.normal(size=(5, 4))
    grad = InputGradient(linear_classifier(weight), device="cpu")
    x = RNG.uniform(0, 1, size=(30, 1, 2, 2)).astype(np.float32)
    y = RNG.integers(0, 5, size=30)
    seen = []
    first = pgd(
        grad, x, y, eps=0.3, steps=4, seed=7, callback=lambda i, z: seen.append((i, z.copy()))
    )
    again = pgd(grad, x, y, eps=0.3, steps=4, seed=7)
    np.testing.assert_array_equal(first, again)
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(seen[-1][1], first)
    for _, z in seen:
        assert np.all(np.abs(z - x) <= 0.3 + 1e-6)
        assert z.min() >= 0.0 and z.max() <= 1.0
    assert not np.array_equal(pgd(grad, x, y, eps=0.3, steps=4, seed=8), first)


def test_robustness_of_a_linear_model_matches_the_margin_formula() -> None:
    """Robust iff the margin exceeds eps * ||w_true - w_other||_1 (clean-correct points only)."""
    eps = 0.05
    result = robustness(linear_classifier(W2), X, Y, eps=eps, steps=10, device="cpu")
    logits = X.reshape(len(X), -1) @ W2.T
    margin = logits[np.arange(len(Y)), Y] - logits[np.arange(len(Y)), 1 - Y]
    worst = margin - eps * np.abs(W2[Y] - W2[1 - Y]).sum(1)
    assert result.clean_accuracy == pytest.approx(float(np.mean(margin > 0)))
    assert result.robust_accuracy == pytest.approx(float(np.mean(worst > 0)))
    assert 0 < result.robust_accuracy < result.clean_accuracy
    assert result.to_dict() == {
        "clean_accuracy": result.clean_accuracy,
        "robust_accuracy": result.robust_accuracy,
        "eps": eps,
        "steps": 10,
        "step": pytest.approx(0.0125),
        "n": 40,
    }
    json.dumps(result.to_dict())


def test_pgd_refuses_an_objective_without_labels() -> None:
    grad = InputGradient(linear_classifier(W2), VectorJacobian(), device="cpu")
    with pytest.raises(AuditError, match="label objective"):
        pgd(grad, X, Y)


def test_cli_attack_prints_accuracies(tmp_path: Path) -> None:
    typer = pytest.importorskip("typer")
    from typer.testing import CliRunner

    from onnxaudit.cli import user_errors
    from onnxaudit.cli.attack import attack

    app = typer.Typer()
    app.command()(user_errors(attack))
    app.command("other")(lambda: None)  # keep `attack` a subcommand, as in the real app
    model = tmp_path / "linear.onnx"
    onnx.save(linear_classifier(W2), model)
    data = tmp_path / "data.npz"
    np.savez(data, x=(X[:, 0] * 255).astype(np.uint8), y=Y)
    out = tmp_path / "r"
    args = ["attack", str(model), "--data", str(data), "--eps", "0.05", "--out", str(out)]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert "clean accuracy:" in run.output and "robust accuracy:" in run.output
    saved = json.loads((out / "result.json").read_text())
    assert saved["schema"] == "onnxaudit/result@1" and saved["robustness"]["eps"] == 0.05
    run = CliRunner().invoke(app, [*args[:-2], "--eps", "-1"])
    assert run.exit_code == 2


ZOO_PAIR = [ROOT / "models" / "zoo" / f"{name}.onnx" for name in ("vgg", "vgg-adv")]


@pytest.mark.slow
@pytest.mark.skipif(not all(p.exists() for p in ZOO_PAIR), reason="zoo not built")
def test_pgd10_breaks_vgg_but_not_vgg_adv() -> None:
    """Through the ONNX gradient, PGD-10 at eps 0.1 breaks vgg, not its adversarially trained
    twin, and agrees with the zoo's own torch PGD numbers (full test set) within sampling error."""
    data = np.load(SUBSET)
    keep = np.concatenate([np.flatnonzero(data["y"] == c)[:30] for c in range(10)])
    x = data["x"][keep, None].astype(np.float32) / 255
    y = data["y"][keep]
    results: dict[str, RobustnessResult] = {
        p.stem: robustness(onnx.load(p), x, y, eps=0.1, steps=10, device="cpu") for p in ZOO_PAIR
    }
    assert results["vgg"].clean_accuracy > 0.85
    assert results["vgg"].robust_accuracy < 0.10
    assert results["vgg-adv"].robust_accuracy > results["vgg"].robust_accuracy + 0.3
    zoo = json.loads((ROOT / "models" / "zoo.json").read_text())["models"]
    for name, result in results.items():
        torch_number = zoo.get(name, {}).get("robust_accuracy_pgd10_eps0.1")
        if torch_number is None:  # zoo.json is written when the build ends
            continue
        sigma = np.sqrt(max(torch_number * (1 - torch_number), 0.01) / result.n)
        assert abs(result.robust_accuracy - torch_number) <= 3 * sigma + 0.03, name


# --- memory: batches sized from a budget ---------------------------------------------------------
def large_input_model(size: int = 320) -> onnx.ModelProto:
    """Conv(3->16) - Relu - Conv(16->16) - Relu - GlobalAveragePool - Gemm on size x size images:
    ~26 MB of activations per image at 320x320."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(0, 0.3, (16, 3, 3, 3)),
        "w2": rng.normal(0, 0.1, (16, 16, 3, 3)),
        "fc": rng.normal(0, 0.3, (4, 16)),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "large",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_batch_is_sized_from_the_memory_budget() -> None:
    model = large_input_model()
    per_image = 4 * 320 * 320 * (3 + 16 * 4) + 4 * (16 * 2 + 4)  # input, 4 maps, pooled, logits
    grad = InputGradient(model, device="cpu", max_memory=200 << 20)
    assert grad.activation_bytes == per_image
    assert grad.batch_size == int((200 << 20) // (3.5 * per_image))  # OVERHEAD 3.5: 2 images
    assert InputGradient(model, device="cpu", max_memory=1).batch_size == 1
    assert InputGradient(model, device="cpu", batch_size=2, max_memory=1 << 40).batch_size == 2


PEAK_SCRIPT = """
import resource, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_attack import large_input_model
from onnxaudit.analyses.robustness import robustness
from onnxaudit.features.gradients import CrossEntropy, InputGradient
n = int(sys.argv[1])
grad = InputGradient(large_input_model(), CrossEntropy(), "cpu", 1, max_memory=150 << 20)
x = np.random.default_rng(0).uniform(size=(n, 3, 320, 320)).astype(np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
robustness(grad, x, np.zeros(n, dtype=np.int64), eps=0.03, steps=2)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.slow  # 15-25 s: kept out of the everyday suite
def test_pgd_memory_stays_bounded_whatever_the_data_set_size() -> None:
    """Peak memory of robustness() beyond its inputs: bounded by the budget, and the same for
    4 and 24 images (one gradient batch at a time; the adversarial copy is the only
    dataset-sized array)."""
    import subprocess
    import sys

    script = PEAK_SCRIPT.format(tests=str(ROOT / "tests"))
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    growth = {}
    for n in (4, 24):
        out = subprocess.run(
            [sys.executable, "-c", script, str(n)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        growth[n] = int(out.stdout.split()[-1])
    image = 3 * 320 * 320 * 4
    assert growth[4] <= (150 << 20) + 8 * image, growth
    assert growth[24] - growth[4] <= 2 * 20 * image, growth  # x_adv for the 20 extra images


@pytest.mark.parametrize(
    "text, size",
    [("2G", 2 << 30), ("1.5GiB", 3 << 29), ("800M", 800 << 20), ("64mb", 64 << 20),
     ("123456789", 123456789), ("512 KiB", 512 << 10)],
)  # fmt: skip
def test_memory_sizes_are_parsed(text: str, size: int) -> None:
    from onnxaudit.cli.options import parse_size

    assert parse_size("--max-memory", text) == size


def test_cli_max_memory_sizes_the_pgd_batches(tmp_path: Path, monkeypatch) -> None:
    """`attack --max-memory` reaches the gradient runner and result.json; a bad size or one too
    small to hold any batch is a usage error before any work."""
    from typer.testing import CliRunner

    from onnxaudit.analyses import robustness as module
    from onnxaudit.cli import app

    budgets = []

    class Spy(InputGradient):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            budgets.append(self.max_memory)

    monkeypatch.setattr(module, "InputGradient", Spy)
    model = tmp_path / "large.onnx"
    onnx.save(large_input_model(size=64), model)
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), y=np.arange(8) % 4)
    out = tmp_path / "r"
    args = ["attack", str(model), "-d", str(data), "--steps", "1", "--device", "cpu"]
    run = CliRunner().invoke(app, [*args, "--max-memory", "100M", "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert budgets == [100 << 20]
    assert json.loads((out / "result.json").read_text())["settings"]["max_memory"] == 100 << 20
    for bad in ("lots", "1M"):
        run = CliRunner().invoke(app, [*args, "--max-memory", bad])
        assert run.exit_code == 2 and "--max-memory" in run.output, run.output
    assert budgets == [100 << 20]
