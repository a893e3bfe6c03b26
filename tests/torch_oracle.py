"""The torch oracle of the gradient tests: `TorchMirror` executes an ONNX graph node by node in
torch (float32 or float64), so autograd on it is an independent reference for onnxaudit's
rewritten gradient graph; `torch_input_gradient` is that reference. bench/gradients.py times
onnxaudit against the same mirror.
"""

from __future__ import annotations

from functools import reduce

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from onnxaudit.features.gradients.context import attributes


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
