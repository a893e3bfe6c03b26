"""Objectives, the batched runner, and whole models (torch-exported, zoo) against independent oracles."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from light import torch_oracle_module
from onnx import TensorProto, helper, numpy_helper

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients import (
    CrossEntropy,
    InputGradient,
    LogitMargin,
    VectorJacobian,
    build_gradient_model,
)

ROOT = Path(__file__).resolve().parents[1]
ZOO = sorted((ROOT / "models" / "zoo").glob("*.onnx"))
CHECKPOINTS = sorted((ROOT / "models" / "zoo" / "checkpoints").glob("*.onnx"))
RNG = np.random.default_rng(1)


def linear_model(weight: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """logits = x W^T + b in float64: every gradient has a closed form."""
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["logits"], transB=1)],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", weight.shape[1]])],
        [helper.make_tensor_value_info("logits", TensorProto.DOUBLE, ["N", weight.shape[0]])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


W, B = RNG.normal(size=(4, 6)), RNG.normal(size=4)
X, Y = RNG.normal(size=(7, 6)), RNG.integers(0, 4, size=7)


def closed_form_ce(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = x @ W.T + B
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    per_sample = -np.log(p[np.arange(len(y)), y])
    return per_sample, (p - np.eye(4)[y]) @ W


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("batch_size", [256, 3])
def test_cross_entropy_closed_form_and_chunking(reduction: str, batch_size: int) -> None:
    """loss is plain CE toward labels and input_grad its gradient, whatever the chunking."""
    per_sample, per_grad = closed_form_ce(X, Y)
    scale = 1 / len(Y) if reduction == "mean" else 1.0
    result = InputGradient(
        linear_model(W, B), CrossEntropy(reduction=reduction), "cpu", None, batch_size
    )(X, Y)
    expected_loss = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}
    np.testing.assert_allclose(result.loss, expected_loss[reduction], rtol=1e-10)
    np.testing.assert_allclose(result.input_grad, per_grad * scale, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.logits, X @ W.T + B, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_logit_margin_closed_form(reduction: str) -> None:
    logits = X @ W.T + B
    others = np.where(np.eye(4, dtype=bool)[Y], -np.inf, logits)
    rival = others.argmax(1)
    margin = logits[np.arange(7), rival] - logits[np.arange(7), Y]
    scale = 1 / len(Y) if reduction == "mean" else 1.0
    result = InputGradient(linear_model(W, B), LogitMargin(reduction=reduction), "cpu")(X, Y)
    np.testing.assert_allclose(result.loss, margin.mean() if reduction == "mean" else margin)
    np.testing.assert_allclose(result.input_grad, (W[rival] - W[Y]) * scale, rtol=1e-12)


def test_targeted_flag_does_not_change_the_graph() -> None:
    """Sign convention: the graph always computes plain CE; only attacks read `targeted`."""
    plain = InputGradient(linear_model(W, B), CrossEntropy(), "cpu")(X, Y)
    targeted = InputGradient(linear_model(W, B), CrossEntropy(targeted=True), "cpu")(X, Y)
    np.testing.assert_array_equal(plain.input_grad, targeted.input_grad)
    assert CrossEntropy().direction == 1 and CrossEntropy(targeted=True).direction == -1


def test_vector_jacobian_product() -> None:
    v = RNG.normal(size=(7, 4))
    result = InputGradient(linear_model(W, B), VectorJacobian(), "cpu", batch_size=2)(X, v)
    np.testing.assert_allclose(result.input_grad, v @ W, rtol=1e-10)
    np.testing.assert_allclose(result.loss, ((X @ W.T + B) * v).sum(), rtol=1e-10)


def test_outputs_and_inputs_of_the_gradient_model() -> None:
    proto = build_gradient_model(linear_model(W, B), CrossEntropy())
    assert [i.name for i in proto.graph.input] == ["x", "labels"]
    assert [o.name for o in proto.graph.output] == ["loss", "logits", "input_grad"]
    onnx.checker.check_model(proto, full_check=True)


def test_trailing_softmax_is_looked_through() -> None:
    """A model that outputs probabilities gets the gradient of CE on its logits."""
    model = linear_model(W, B)
    model.graph.node[0].output[0] = "z"
    model.graph.node.append(helper.make_node("Softmax", ["z"], ["logits"], axis=1))
    per_sample, per_grad = closed_form_ce(X, Y)
    result = InputGradient(model, CrossEntropy(reduction="sum"), "cpu")(X, Y)
    np.testing.assert_allclose(result.input_grad, per_grad, rtol=1e-10)
    np.testing.assert_allclose(result.logits, X @ W.T + B, rtol=1e-12)


@pytest.mark.parametrize("name", ["labels", "loss", "input_grad", "logits"])
def test_model_tensors_with_reserved_names_are_renamed(name: str) -> None:
    """A graph's own 'labels' or 'logits' tensor (common in exports) does not clash with the
    gradient graph's inputs and outputs."""
    model = linear_model(W, B)
    model.graph.node[0].output[0] = name
    model.graph.node.append(helper.make_node("Identity", [name], ["scores"]))
    model.graph.output[0].name = "scores"
    per_sample, per_grad = closed_form_ce(X, Y)
    result = InputGradient(model, CrossEntropy(reduction="sum"), "cpu")(X, Y)
    np.testing.assert_allclose(result.input_grad, per_grad, rtol=1e-10)
    np.testing.assert_allclose(result.logits, X @ W.T + B, rtol=1e-12)


def test_mismatched_labels_are_reported() -> None:
    with pytest.raises(AuditError, match="7 images but 3 labels"):
        InputGradient(linear_model(W, B), device="cpu")(X, Y[:3])


# --- whole models --------------------------------------------------------------------------------


def _torch_cnn():
    """Conv-BN-ReLU, overlapping padded MaxPool, strided/dilated/grouped conv, SiLU, a residual
    Add, AvgPool, Resize and global pooling: the mix a real classifier exports."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.branch = nn.Sequential(
                nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2), nn.SiLU(), nn.Conv2d(8, 8, 1)
            )
            self.down = nn.Sequential(nn.Conv2d(8, 16, 5, stride=2, padding=2), nn.LeakyReLU(0.1))
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            h = self.pool(self.stem(x))
            h = torch.relu(h + self.branch(h))
            h = nn.functional.interpolate(nn.functional.avg_pool2d(h, 2), scale_factor=2.0)
            h = self.down(h).mean(dim=(2, 3))
            return self.head(torch.nn.functional.hardswish(h))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # non-trivial running statistics
        net.stem[1].running_mean.uniform_(-0.2, 0.2)
        net.stem[1].running_var.uniform_(0.5, 2.0)
    return torch, net.eval()


def test_torch_exported_cnn_matches_autograd() -> None:
    torch, net = _torch_cnn()
    x = torch.rand(6, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    buffer = io.BytesIO()
    torch.onnx.export(
        net, x, buffer, dynamo=False, opset_version=17, input_names=["input"],
        output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    ops = {n.op_type for n in model.graph.node}
    assert {"MaxPool", "Resize", "AveragePool", "Sigmoid", "HardSwish"} <= ops
    onnx.checker.check_model(build_gradient_model(model), full_check=True)
    result = InputGradient(model, CrossEntropy(), "cpu", batch_size=4)(x.numpy(), y.numpy())
    xt = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(net(xt), y)
    loss.backward()
    reference = xt.grad.numpy()
    assert abs(float(result.loss) - loss.item()) < 1e-5
    assert np.abs(result.input_grad - reference).max() <= 1e-4 * np.abs(reference).max()


ZOO_MODELS = ZOO + CHECKPOINTS[-1:]


@pytest.mark.parametrize("path", ZOO_MODELS, ids=[p.name for p in ZOO_MODELS])
def test_zoo_model_matches_finite_differences(path: Path) -> None:
    """float32 onnxruntime gradient vs float64 central differences of the same graph."""
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(path)
    double = _as_float64(model)
    oracle = ReferenceEvaluator(double)
    data = np.load(ROOT / "models" / "data" / "fashion-mnist-test-subset.npz")
    # noise breaks the exact ties of the black background (max is not differentiable at a tie)
    x = data["x"][:2, None].astype(np.float64) / 255 + RNG.uniform(0, 0.05, size=(2, 1, 28, 28))
    classes = oracle.run(None, {model.graph.input[0].name: x})[0].shape[1]
    y = data["y"][:2] % classes  # the zoo has 4-class models too
    result = InputGradient(model, CrossEntropy(reduction="sum"), "cpu")(x, y)

    def loss(z: np.ndarray) -> float:
        logits = oracle.run(None, {model.graph.input[0].name: z})[0]
        logits = logits - logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        return float(-log_p[np.arange(len(y)), y].sum())

    h = 1e-7  # tiny: a trained ReLU net has many units near a kink, float64 affords it
    directions = RNG.normal(size=(2, *x.shape))
    numeric = np.array([(loss(x + h * d) - loss(x - h * d)) / (2 * h) for d in directions])
    analytic = np.array([(result.input_grad * d).sum() for d in directions])
    # float32 forward may resolve a near-tie (max pool, ReLU at ~0) differently from float64
    assert np.linalg.norm(numeric - analytic) <= 1e-3 * np.linalg.norm(numeric)


@pytest.mark.parametrize("path", ZOO_MODELS, ids=[p.name for p in ZOO_MODELS])
def test_zoo_model_matches_torch_autograd(path: Path) -> None:
    torch = pytest.importorskip("torch")
    bench = torch_oracle_module()
    model = onnx.load(path)
    data = np.load(ROOT / "models" / "data" / "fashion-mnist-test-subset.npz")
    x = data["x"][::50, None].astype(np.float32) / 255
    classes = model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    y = data["y"][::50] % classes  # the zoo has 4-class models too
    torch.set_num_threads(1)
    mirror = bench.TorchMirror(model, dtype=torch.float64).eval()
    loss, reference = bench.torch_input_gradient(mirror, x.astype(np.float64), y)
    result = InputGradient(model, CrossEntropy(), "cpu", threads=1)(x, y)
    assert abs(float(result.loss) - loss) <= 1e-5 * max(1.0, abs(loss))
    # per sample, on the batch's gradient scale (confident samples have tiny gradients): a
    # float32 forward can round a pre-activation of ~1e-8 to the other side of a ReLU, which
    # changes that one sample (torch float32 does it too, on other samples)
    errors = np.abs(result.input_grad - reference).max((1, 2, 3)) / np.abs(reference).max()
    assert np.median(errors) < 1e-5
    assert (errors > 1e-4).sum() <= 1


def _as_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph in double precision, for the reference evaluator."""
    double = onnx.ModelProto()
    double.CopyFrom(model)
    for init in double.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name)
            )
    for info in [*double.graph.input, *double.graph.output]:
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.DOUBLE
    del double.graph.value_info[:]
    return double
