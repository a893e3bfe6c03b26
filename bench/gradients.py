"""Time one forward+backward input-gradient step: onnxaudit (plain onnxruntime) vs torch autograd.

Both run the same weights at the same thread count in one process: torch executes the ONNX graph
through `TorchMirror`, a node-by-node torch interpreter for the ops the zoo uses, so the
comparison needs no separate torch definition of each model.

    python bench/gradients.py [MODEL.onnx ...] [--batch 64] [--threads 2] [--repeats 20]
    python bench/gradients.py --maxpool   # MaxPool backward: onnxaudit's rule vs Indices+Scatter
    python bench/gradients.py --arch resnet18 --arch vit_b_16 --batch 8 --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from functools import partial, reduce
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from onnxaudit.features.gradients import (
    CrossEntropy,
    InputGradient,
    VectorJacobian,
    build_gradient_model,
)
from onnxaudit.features.gradients.context import attributes
from onnxaudit.features.runtime import create_session

DEFAULT_MODELS = ["models/zoo/vgg.onnx", "models/zoo/resnet.onnx"]
ROOT = Path(__file__).resolve().parents[1]


def _pads(attrs: dict, n: int) -> tuple[list[int], list[int]]:
    pads = list(attrs.get("pads") or [0] * (2 * n))
    return pads[:n], pads[n:]


def _padded(x: torch.Tensor, begin: list[int], end: list[int], value: float) -> torch.Tensor:
    pairs = [p for b, e in zip(reversed(begin), reversed(end), strict=True) for p in (b, e)]
    return F.pad(x, pairs, value=value)


def _pool(op: str, x: torch.Tensor, a: dict) -> torch.Tensor:
    """Max/average pooling; asymmetric pads become explicit padding (excluded from averages
    unless count_include_pad)."""
    begin, end = _pads(a, x.dim() - 2)
    include = bool(a.get("count_include_pad", 0))
    kwargs = dict(stride=a.get("strides", 1), ceil_mode=bool(a.get("ceil_mode", 0)))
    if op == "MaxPool":
        if begin != end:
            x, begin = _padded(x, begin, end, -float("inf")), 0
        return F.max_pool2d(
            x, a["kernel_shape"], padding=begin, dilation=a.get("dilations", 1), **kwargs
        )
    if begin == end:
        return F.avg_pool2d(
            x, a["kernel_shape"], padding=begin, count_include_pad=include, **kwargs
        )
    sums = F.avg_pool2d(
        _padded(x, begin, end, 0.0), a["kernel_shape"], divisor_override=1, **kwargs
    )
    if include:
        return sums / float(np.prod(a["kernel_shape"]))
    ones = _padded(torch.ones_like(x[:1, :1]), begin, end, 0.0)
    return sums / F.avg_pool2d(ones, a["kernel_shape"], divisor_override=1, **kwargs)


class TorchMirror(torch.nn.Module):
    """Runs an ONNX classifier's graph with torch ops (enough for conv nets exported by torch)."""

    def __init__(self, model: onnx.ModelProto, dtype: torch.dtype = torch.float32) -> None:
        """`dtype`: float type of the weights (float64 gives a reference free of float32 kinks)."""
        super().__init__()
        self.graph = model.graph
        arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant":
                arrays[node.output[0]] = numpy_helper.to_array(attributes(node)["value"])
        float_type = torch.empty((), dtype=dtype).numpy().dtype
        self.consts = {
            name: torch.from_numpy(a.astype(float_type) if a.dtype.kind == "f" else a.copy())
            for name, a in arrays.items()
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = dict(self.consts)
        env[self.graph.input[0].name] = x
        for node in self.graph.node:
            if node.op_type == "Constant":
                continue
            args = [env[i] if i else None for i in node.input]
            env[node.output[0]] = self._run(node, attributes(node), args)
        return env[self.graph.output[0].name]

    def calibrate(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Set every BatchNormalization's mean and variance to the statistics of its input on
        `x` (what a trained network's running statistics are); returns them by tensor name.
        Random weights with random statistics let activations grow without bound."""
        self.calibrating = True
        try:
            with torch.no_grad():
                self(x)
        finally:
            self.calibrating = False
        names = {
            n.input[i] for n in self.graph.node if n.op_type == "BatchNormalization" for i in (3, 4)
        }
        return {name: self.consts[name].numpy() for name in names}

    calibrating = False

    def _run(self, node: onnx.NodeProto, a: dict, args: list) -> torch.Tensor:
        op, x = node.op_type, args[0]
        if op == "Conv":
            begin, end = _pads(a, x.dim() - 2)
            if begin != end:
                x, begin = _padded(x, begin, end, 0.0), 0
            return F.conv2d(
                x, args[1], args[2] if len(args) > 2 else None,
                a.get("strides", 1), begin, a.get("dilations", 1), a.get("group", 1),
            )  # fmt: skip
        if op in ("MaxPool", "AveragePool"):
            return _pool(op, x, a)
        if op == "BatchNormalization":
            return F.batch_norm(
                x, args[3], args[4], args[1], args[2], self.calibrating, 1.0, a.get("epsilon", 1e-5)
            )
        if op == "Gemm":
            a_, b_ = (x.T if a.get("transA") else x), (args[1].T if a.get("transB") else args[1])
            out = a.get("alpha", 1.0) * a_ @ b_
            return (
                out + a.get("beta", 1.0) * args[2] if len(args) > 2 and args[2] is not None else out
            )
        if op == "GlobalAveragePool":
            return x.mean(dim=(2, 3), keepdim=True)
        if op == "ReduceMean":
            axes = a.get("axes") or args[1].tolist()
            return x.mean(dim=tuple(axes), keepdim=bool(a.get("keepdims", 1)))
        if op == "Flatten":
            return torch.flatten(x, a.get("axis", 1))
        if op == "Reshape":
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(args[1].tolist())]
            return x.reshape(shape)
        if op == "LRN":
            return F.local_response_norm(
                x, a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
            )
        if op == "Sum":
            return reduce(torch.add, args)
        if op == "Concat":
            return torch.cat(args, dim=a["axis"])
        if op == "Unsqueeze":
            for axis in sorted(a.get("axes") or args[1].tolist()):
                x = x.unsqueeze(axis)
            return x
        if op == "Transpose":
            return x.permute(*a["perm"])
        if op == "Softmax":
            return torch.softmax(x, a.get("axis", -1))
        simple = {
            "Relu": torch.relu,
            "Sigmoid": torch.sigmoid,
            "Identity": lambda t: t,
            "Dropout": lambda t: t,
        }
        binary = {"Add": torch.add, "Mul": torch.mul, "MatMul": torch.matmul, "Sub": torch.sub}
        if op in simple:
            return simple[op](x)
        if op in binary:
            return binary[op](x, args[1])
        raise NotImplementedError(f"TorchMirror has no {op}")


def torch_input_gradient(
    mirror: TorchMirror, x: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    """Mean CE and d CE / d x by torch autograd."""
    xt = torch.from_numpy(x).requires_grad_(True)
    loss = F.cross_entropy(mirror(xt).flatten(1), torch.from_numpy(y))
    (grad,) = torch.autograd.grad(loss, xt)
    return float(loss), grad.detach().numpy()


def _best_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Fastest of `repeats` runs of each function, interleaved so load spikes hit all alike."""
    best = dict.fromkeys(fns, np.inf)
    for _ in range(repeats + 1):  # the first round warms up and counts too (min is robust)
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: 1000 * t for name, t in best.items()}


def bench(path: str, batch: int, threads: int, repeats: int) -> dict:
    model = onnx.load(path)
    rng = np.random.default_rng(0)
    dims = [d.dim_value or batch for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = rng.uniform(size=dims).astype(np.float32)
    y = rng.integers(0, 10, size=batch).astype(np.int64)
    grad = InputGradient(model, CrossEntropy(), device="cpu", threads=threads, batch_size=batch)
    torch.set_num_threads(threads)
    mirror = TorchMirror(model).eval()
    ours = grad(x, y)
    _, reference = torch_input_gradient(mirror, x, y)
    # per sample, on the batch's gradient scale: a float32 flip at a ReLU kink stays in its sample
    errors = np.abs(ours.input_grad - reference).max((1, 2, 3)) / np.abs(reference).max()
    times = _best_ms(
        {"onnx": lambda: grad(x, y), "torch": lambda: torch_input_gradient(mirror, x, y)}, repeats
    )
    return _row(path, batch, threads, times, errors)


def _archs():
    spec = importlib.util.spec_from_file_location("archs", ROOT / "tests" / "archs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_arch(name: str, batch: int, threads: int, repeats: int) -> dict:
    """A tests/archs.py architecture at 224x224 (torchscript export, opset 17) against torch
    autograd on the module itself, float32, same weights."""
    archs = _archs()
    torch.set_num_threads(threads)
    module = archs.randomised(archs.ARCHITECTURES[name]())
    with tempfile.TemporaryDirectory() as tmp:
        path = archs.export(module, Path(tmp) / f"{name}.onnx", "torchscript", 17, (3, 224, 224))
        model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch, 3, 224, 224)).astype(np.float32)
    y = rng.integers(0, 1000, size=batch).astype(np.int64)
    grad = InputGradient(model, CrossEntropy(), device="cpu", threads=threads, batch_size=batch)
    ours = grad(x, y)
    _, reference = torch_input_gradient(module, x, y)
    flat = (ours.input_grad - reference).reshape(batch, -1)
    errors = np.linalg.norm(flat, axis=1) / np.linalg.norm(reference.reshape(batch, -1), axis=1)
    times = _best_ms(
        {"onnx": lambda: grad(x, y), "torch": lambda: torch_input_gradient(module, x, y)}, repeats
    )
    return _row(name, batch, threads, times, errors)


def _row(model: str, batch: int, threads: int, times: dict, errors: np.ndarray) -> dict:
    return {
        "model": model,
        "batch": batch,
        "threads": threads,
        "onnx_ms": times["onnx"],
        "torch_ms": times["torch"],
        "ratio": times["onnx"] / times["torch"],
        "median_rel_error": float(np.median(errors)),
        "samples_off": int((errors > 1e-4).sum()),
    }


def _pool_models(kernel: int, stride: int, pad: int, shape: tuple) -> dict[str, onnx.ModelProto]:
    """x -> MaxPool -> Flatten, its onnxaudit gradient model, and the Indices+ScatterElements one."""
    geometry = dict(kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=[pad] * 4)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape[1:]])
    flat = helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)
    forward = helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["y"], **geometry), helper.make_node("Flatten", ["y"], ["logits"])],
        "pool", [x_info], [flat],
    )  # fmt: skip
    scatter = helper.make_graph(
        [
            helper.make_node("MaxPool", ["x"], ["y", "idx"], **geometry),
            helper.make_node("Flatten", ["y"], ["logits"]),
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
            *[helper.make_node("Reshape", [a, "flat"], [b]) for a, b in
              [("zeros", "z"), ("idx", "i"), ("grad_logits", "g")]],
            helper.make_node("ScatterElements", ["z", "i", "g"], ["added"], reduction="add"),
            helper.make_node("Reshape", ["added", "shape"], ["input_grad"]),
        ],
        "scatter",
        [x_info, helper.make_tensor_value_info("grad_logits", TensorProto.FLOAT, ["N", None])],
        [helper.make_tensor_value_info("input_grad", TensorProto.FLOAT, None), flat],
        [numpy_helper.from_array(np.asarray([-1], dtype=np.int64), "flat")],
    )  # fmt: skip
    models = {}
    for name, graph in (("forward", forward), ("scatter", scatter)):
        models[name] = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        models[name].ir_version = 8
    models["onnxaudit"] = build_gradient_model(models["forward"], VectorJacobian())
    return models


def maxpool_study(threads: int, repeats: int) -> None:
    shape = (64, 32, 28, 28)
    x = np.random.default_rng(0).uniform(size=shape).astype(np.float32)
    print(
        "| MaxPool (64x32x28x28) | forward ms | onnxaudit fwd+bwd ms | Indices+Scatter fwd+bwd ms |"
    )
    print("|---|---|---|---|")
    for kernel, stride, pad in ((2, 2, 0), (3, 2, 1)):
        models = _pool_models(kernel, stride, pad, shape)
        sessions = {name: create_session(m, "cpu", threads) for name, m in models.items()}
        out = (shape[2] + 2 * pad - kernel) // stride + 1
        v = (
            np.random.default_rng(1)
            .normal(size=(shape[0], shape[1] * out * out))
            .astype(np.float32)
        )
        feeds = {"x": x, "grad_logits": v}
        grads = [sessions[n].run(["input_grad"], feeds)[0] for n in ("onnxaudit", "scatter")]
        # same cells; overlapping windows add their shares in another order (rounding only)
        np.testing.assert_allclose(*grads, rtol=0, atol=1e-6 * np.abs(grads[1]).max())
        runs = {name: partial(sessions[name].run, None, feeds) for name in ("onnxaudit", "scatter")}
        runs["forward"] = partial(sessions["forward"].run, None, {"x": x})
        times = _best_ms(runs, repeats)
        print(
            f"| k{kernel} s{stride} p{pad} | {times['forward']:.1f} | {times['onnxaudit']:.1f} | "
            f"{times['scatter']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--maxpool", action="store_true", help="Only the MaxPool study.")
    parser.add_argument(
        "--arch", action="append", default=[], help="tests/archs.py architecture (repeatable)."
    )
    args = parser.parse_args()
    if args.maxpool:
        maxpool_study(args.threads, args.repeats)
        return
    print(
        "| model | batch | threads | onnxaudit ms | torch ms | ratio | "
        "median rel. error | samples > 1e-4 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    runs = [partial(bench_arch, name) for name in args.arch]
    runs += [partial(bench, path) for path in (args.models if not args.arch else [])]
    for run in runs:
        r = run(args.batch, args.threads, args.repeats)
        print(
            f"| {Path(r['model']).name} | {r['batch']} | {r['threads']} | {r['onnx_ms']:.1f} | "
            f"{r['torch_ms']:.1f} | {r['ratio']:.2f}x | {r['median_rel_error']:.1e} | "
            f"{r['samples_off']} |"
        )


if __name__ == "__main__":
    main()
