"""Each backward rule against finite differences of the forward graph.

Every case is a tiny graph x -> op(s) -> Flatten -> logits. The gradient model runs in
onnxruntime (float64 where onnxruntime has double kernels, else float32); the oracle is a central
finite difference of sum(logits * v) along random directions, evaluated in float64 by
onnx.reference.ReferenceEvaluator, so neither onnxruntime nor the rules judge themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from scipy.special import erf

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients import RULES, InputGradient, VectorJacobian, build_gradient_model

F32, F64 = TensorProto.FLOAT, TensorProto.DOUBLE
N = helper.make_node
RNG = np.random.default_rng(0)


@dataclass
class Case:
    """x (batch 2) -> nodes -> 'y' -> Flatten -> logits; float inits follow the case dtype."""

    nodes: list
    shape: tuple
    inits: dict = field(default_factory=dict)
    dtype: int = F64
    opset: int = 18
    low: float = -1.0
    high: float = 1.0
    oracle: Callable[[np.ndarray], np.ndarray] | None = None  # float64 numpy forward where
    # onnx.reference is wrong (LRN, coerced Softmax, Upsample-7, Resize-10) or float32 inside

    def model(self, dtype: int) -> onnx.ModelProto:
        np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
        inits = [
            numpy_helper.from_array(v.astype(np_dtype) if v.dtype.kind == "f" else v, k)
            for k, v in self.inits.items()
        ]
        nodes = [_retyped(n, dtype) for n in self.nodes] + [N("Flatten", ["y"], ["logits"])]
        graph = helper.make_graph(
            nodes,
            "case",
            [helper.make_tensor_value_info("x", dtype, ["N", *self.shape[1:]])],
            [helper.make_tensor_value_info("logits", dtype, None)],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        return model


def _retyped(node: onnx.NodeProto, dtype: int) -> onnx.NodeProto:
    """Casts written with to=-1 mean 'the case dtype' (so the float64 oracle stays float64)."""
    for attr in node.attribute:
        if attr.name == "to" and attr.i == -1:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            next(a for a in copy.attribute if a.name == "to").i = dtype
            return copy
    return node


def ints(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def weights(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape)


def conv(name: str = "y", **attrs) -> onnx.NodeProto:
    return N("Conv", ["x", "w", "b"], [name], **attrs)


def lrn(size: int, alpha: float, beta: float, bias: float = 1.0) -> Callable:
    """The ONNX spec's LRN (onnx.reference's differs from it, onnxruntime's and torch's)."""

    def forward(x: np.ndarray) -> np.ndarray:
        c = np.arange(x.shape[1])
        offset = c[:, None] - c[None, :]
        band = (offset >= -((size - 1) // 2)) & (offset <= size - 1 - (size - 1) // 2)
        squares = np.einsum("nc...,cd->nd...", x**2, band.astype(float))
        return x / (bias + alpha / size * squares) ** beta

    return forward


def batch_norm_7(x: np.ndarray) -> np.ndarray:
    g, b, m, v = (BN7[k].reshape(-1, 1, 1) for k in "gbmv")
    return (x - m) / np.sqrt(v + 1e-3) * g + b


def erf_abs_log(x: np.ndarray) -> np.ndarray:
    return erf(x) + np.log(np.abs(x) + 1)


def upsample_linear(scale: int) -> Callable:
    """Upsample-9 linear on the last two axes: asymmetric coordinates j / scale, edge clamped."""

    def forward(x: np.ndarray) -> np.ndarray:
        for axis in (2, 3):
            n = x.shape[axis]
            where = np.arange(n * scale) / scale
            low = np.floor(where).astype(int)
            high = np.minimum(low + 1, n - 1)
            w = (where - low).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
            x = np.take(x, low, axis=axis) * (1 - w) + np.take(x, high, axis=axis) * w
        return x

    return forward


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def group_norm(groups: int, scale: np.ndarray, bias: np.ndarray, eps: float) -> Callable:
    def forward(x: np.ndarray) -> np.ndarray:
        g = x.reshape(len(x), groups, -1)
        g = (g - g.mean(2, keepdims=True)) / np.sqrt(g.var(2, keepdims=True) + eps)
        shape = (-1, *[1] * (x.ndim - 2))
        return g.reshape(x.shape) * scale.reshape(shape) + bias.reshape(shape)

    return forward


def coerced_softmax(x: np.ndarray) -> np.ndarray:
    """Softmax before opset 13: over everything from axis 1 on."""
    flat = x.reshape(len(x), -1)
    e = np.exp(flat - flat.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).reshape(x.shape)


def nearest(scales: tuple[float, ...]) -> Callable:
    """Upsample / Resize-10 nearest: out[j] = in[floor(j / scale)] per axis."""

    def forward(x: np.ndarray) -> np.ndarray:
        for axis, s in enumerate(scales):
            picks = np.floor(np.arange(int(x.shape[axis] * s)) / s).astype(int)
            x = np.take(x, picks, axis=axis)
        return x

    return forward


GN_SCALE, GN_BIAS = weights(4), weights(4)
BN7 = {"g": weights(2), "b": weights(2), "m": weights(2), "v": np.asarray([0.5, 2.0])}
CONV_INITS = {"w": weights(3, 2, 3, 3), "b": weights(3)}
IMG = (2, 2, 7, 7)
CASES = {
    # sliding windows (float32: onnxruntime has no double Conv/pool kernels)
    "conv_pads": Case([conv(pads=[1, 1, 1, 1])], IMG, CONV_INITS, F32),
    "conv_stride_dilation_asym_pads": Case(
        [conv(strides=[2, 1], dilations=[2, 1], pads=[1, 0, 2, 1])], (2, 2, 9, 8), CONV_INITS, F32
    ),
    "conv_same_upper_stride2": Case(
        [conv(auto_pad="SAME_UPPER", strides=[2, 2])], IMG, CONV_INITS, F32
    ),
    "conv_same_lower_k4": Case(
        [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER", strides=[2, 2])],
        (2, 2, 8, 8),
        {"w": weights(3, 2, 4, 4)},
        F32,
    ),
    "conv_dilated_stride1": Case(
        [N("Conv", ["x", "w"], ["y"], dilations=[2, 1], pads=[2, 0, 1, 1], group=2)],
        (2, 4, 8, 7),
        {"w": weights(6, 2, 3, 2)},
        F32,
    ),
    # more than FEW_CHANNELS input channels: the flipped "full" Conv route
    "conv_flipped_wide": Case(
        [N("Conv", ["x", "w"], ["y"], pads=[1, 1, 0, 0])],
        (2, 6, 6, 5),
        {"w": weights(3, 6, 3, 2)},
        F32,
    ),
    "conv_flipped_groups_dilated": Case(
        [N("Conv", ["x", "w"], ["y"], dilations=[2, 1], pads=[2, 0, 1, 1], group=2)],
        (2, 6, 8, 7),
        {"w": weights(4, 3, 3, 2)},
        F32,
    ),
    "conv_valid": Case([conv(auto_pad="VALID")], IMG, CONV_INITS, F32),
    "conv_groups": Case(
        [N("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])],
        (2, 4, 6, 6),
        {"w": weights(6, 2, 3, 3)},
        F32,
    ),
    "conv_depthwise": Case(
        [N("Conv", ["x", "w"], ["y"], group=3, strides=[2, 2])],
        (2, 3, 7, 7),
        {"w": weights(3, 1, 3, 3)},
        F32,
    ),
    "conv_transpose": Case(
        [
            N(
                "ConvTranspose",
                ["x", "w"],
                ["y"],
                strides=[2, 2],
                pads=[1, 1, 1, 1],
                output_padding=[1, 1],
            )
        ],
        (2, 2, 4, 4),
        {"w": weights(2, 3, 3, 3)},
        F32,
    ),
    "maxpool_2x2": Case(
        [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], (2, 2, 6, 6), dtype=F32
    ),
    "maxpool_overlap_pads": Case(
        [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
        IMG,
        dtype=F32,
    ),
    "maxpool_ceil_dilation": Case(
        [
            N(
                "MaxPool",
                ["x"],
                ["y"],
                kernel_shape=[2, 3],
                strides=[2, 2],
                dilations=[2, 1],
                ceil_mode=1,
            )
        ],
        IMG,
        dtype=F32,
    ),
    "maxpool_same_upper_indices": Case(
        [
            N(
                "MaxPool",
                ["x"],
                ["y", "idx"],
                kernel_shape=[2, 2],
                strides=[2, 2],
                auto_pad="SAME_UPPER",
            )
        ],
        IMG,
        dtype=F32,
    ),
    "maxpool_floor_leftover": Case(
        [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], IMG, dtype=F32
    ),
    "avgpool_2x2": Case(
        [N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
        (2, 2, 6, 6),
        dtype=F32,
    ),
    "avgpool_tiling_padded_ceil": Case(
        [
            N(
                "AveragePool",
                ["x"],
                ["y"],
                kernel_shape=[2, 2],
                strides=[2, 2],
                pads=[1, 0, 0, 1],
                ceil_mode=1,
            )
        ],
        IMG,
        dtype=F32,
    ),
    "avgpool_pads_exclude": Case(
        [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
        IMG,
        dtype=F32,
    ),
    "avgpool_pads_include_ceil": Case(
        [
            N(
                "AveragePool",
                ["x"],
                ["y"],
                kernel_shape=[3, 2],
                strides=[2, 2],
                pads=[1, 0, 1, 1],
                count_include_pad=1,
                ceil_mode=1,
            )
        ],
        (2, 2, 8, 7),
        dtype=F32,
    ),
    "global_average_pool": Case([N("GlobalAveragePool", ["x"], ["y"])], IMG, dtype=F32),
    "global_max_pool": Case([N("GlobalMaxPool", ["x"], ["y"])], IMG, dtype=F32),
    "resize_nearest_scales": Case(
        [N("Resize", ["x", "", "s"], ["y"], mode="nearest")],
        (2, 1, 3, 4),
        {"s": np.asarray([1, 1, 2, 1.5], np.float32)},
        F32,
    ),
    "resize_linear_sizes": Case(
        [N("Resize", ["x", "", "", "sz"], ["y"], mode="linear")],
        (2, 2, 4, 5),
        {"sz": ints(2, 2, 7, 9)},
        F32,
    ),
    "resize_linear_align_corners": Case(
        [
            N(
                "Resize",
                ["x", "", "s"],
                ["y"],
                mode="linear",
                coordinate_transformation_mode="align_corners",
            )
        ],
        (2, 1, 4, 3),
        {"s": np.asarray([1, 1, 2, 2], np.float32)},
        F32,
    ),
    # elementwise
    "relu": Case([N("Relu", ["x"], ["y"])], IMG),
    "leaky_relu": Case([N("LeakyRelu", ["x"], ["y"], alpha=0.2)], IMG),
    "prelu": Case([N("PRelu", ["x", "slope"], ["y"])], IMG, {"slope": weights(2, 1, 1)}),
    "clip_both": Case(
        [N("Clip", ["x", "lo", "hi"], ["y"])], IMG, {"lo": np.asarray(-0.5), "hi": np.asarray(0.3)}
    ),
    "clip_max_only": Case([N("Clip", ["x", "", "hi"], ["y"])], IMG, {"hi": np.asarray(0.3)}),
    "sigmoid": Case([N("Sigmoid", ["x"], ["y"])], IMG),
    "tanh": Case([N("Tanh", ["x"], ["y"])], IMG),
    "hard_sigmoid": Case(
        [N("HardSigmoid", ["x"], ["y"], alpha=0.3, beta=0.4)], IMG, low=-4, high=4
    ),
    "hard_swish": Case([N("HardSwish", ["x"], ["y"])], IMG, low=-5, high=5),
    "softplus": Case([N("Softplus", ["x"], ["y"])], IMG),
    "elu": Case([N("Elu", ["x"], ["y"], alpha=0.5)], IMG),
    "exp_neg": Case([N("Neg", ["x"], ["t"]), N("Exp", ["t"], ["y"])], IMG),
    "batch_norm": Case(
        [N("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], epsilon=1e-3)],
        IMG,
        {"g": weights(2), "b": weights(2), "m": weights(2), "v": np.asarray([0.5, 2.0])},
    ),
    # broadcasting arithmetic, both operands on the path
    "add_broadcast": Case(
        [
            N("ReduceSum", ["x", "a1"], ["t"]),
            N("Add", ["x", "t"], ["u"]),
            N("Add", ["u", "c"], ["y"]),
        ],
        (2, 3, 4),
        {"a1": ints(1), "c": weights(4)},
    ),
    "sub_broadcast": Case(
        [
            N("ReduceSum", ["x", "a1"], ["t"]),
            N("Sub", ["t", "x"], ["u"]),
            N("Sub", ["c", "u"], ["y"]),
        ],
        (2, 3, 4),
        {"a1": ints(1), "c": weights(3, 1)},
    ),
    "mul_broadcast": Case(
        [
            N("ReduceMean", ["x", "a1"], ["t"]),
            N("Mul", ["t", "x"], ["u"]),
            N("Mul", ["u", "c"], ["y"]),
        ],
        (2, 3, 4),
        {"a1": ints(2), "c": weights(3, 1)},
    ),
    "div_broadcast": Case(
        [
            N("ReduceSum", ["x", "a1"], ["t"]),
            N("Mul", ["t", "t"], ["t2"]),
            N("Add", ["t2", "one"], ["d"]),
            N("Div", ["x", "d"], ["u"]),
            N("Div", ["c", "d"], ["w"]),
            N("Add", ["u", "w"], ["y"]),
        ],
        (2, 3, 4),
        {"a1": ints(1), "one": np.asarray(1.0), "c": weights(4)},
    ),
    "where_compare": Case(
        [
            N("Greater", ["x", "zero"], ["pos"]),
            N("Mul", ["x", "c"], ["small"]),
            N("Where", ["pos", "x", "small"], ["y"]),
        ],
        IMG,
        {"zero": np.asarray(0.0), "c": np.asarray(0.1)},
    ),
    "expand": Case(
        [N("ReduceMean", ["x", "a23"], ["t"]), N("Expand", ["t", "shape"], ["y"])],
        IMG,
        {"a23": ints(2, 3), "shape": ints(1, 2, 3, 3)},
    ),
    # linear layers
    "gemm_weights": Case(
        [N("Gemm", ["x", "w", "c"], ["y"], transB=1, alpha=0.7, beta=0.3)],
        (2, 5),
        {"w": weights(3, 5), "c": weights(3)},
    ),
    "gemm_input_as_b_and_c": Case(
        [
            N("Gemm", ["w", "x", "x"], ["t"], transA=1, transB=1, alpha=0.5, beta=2.0),
            N("Transpose", ["t"], ["y"]),
        ],
        (4, 4),
        {"w": weights(4, 4)},
    ),
    "gemm_input_as_transposed_a": Case(
        [N("Transpose", ["x"], ["xt"]), N("Gemm", ["xt", "w"], ["y"], transA=1)],
        (2, 5),
        {"w": weights(5, 3)},
    ),
    "matmul_weights": Case([N("MatMul", ["x", "w"], ["y"])], (2, 3, 4), {"w": weights(4, 5)}),
    "matmul_both_operands": Case(
        [N("Transpose", ["x"], ["xt"], perm=[0, 2, 1]), N("MatMul", ["x", "xt"], ["y"])], (2, 3, 4)
    ),
    "matmul_broadcast_batch": Case(
        [N("MatMul", ["w", "x"], ["y"])], (2, 3, 4, 5), {"w": weights(3, 2, 4)}
    ),
    # reductions and softmax
    "reduce_mean_axes_input": Case(
        [N("ReduceMean", ["x", "a"], ["y"], keepdims=0)], IMG, {"a": ints(-1, 1)}
    ),
    "reduce_mean_axes_attribute": Case(
        [N("ReduceMean", ["x"], ["y"], axes=[2], keepdims=1)], IMG, opset=13
    ),
    "reduce_sum_no_keepdims": Case(
        [N("ReduceSum", ["x", "a"], ["y"], keepdims=0)], IMG, {"a": ints(1, 3)}
    ),
    "softmax": Case([N("Softmax", ["x"], ["y"], axis=1)], (2, 3, 4)),
    "log_softmax": Case([N("LogSoftmax", ["x"], ["y"])], (2, 3, 4)),
    # structure
    "reshape_shape_driven": Case(
        [
            N("Shape", ["x"], ["s"]),
            N("Gather", ["s", "first"], ["n"]),
            N("Unsqueeze", ["n", "zero"], ["n1"]),
            N("Concat", ["n1", "minus1"], ["target"], axis=0),
            N("Reshape", ["x", "target"], ["r"]),
            N("ConstantOfShape", ["s"], ["ones"], value=numpy_helper.from_array(np.ones(1))),
            N("Mul", ["x", "ones"], ["m"]),
            N("Reshape", ["m", "target"], ["r2"]),
            N("Add", ["r", "r2"], ["y"]),
        ],
        IMG,
        {"first": np.asarray(0), "zero": ints(0), "minus1": ints(-1)},
    ),
    "transpose_squeeze_unsqueeze": Case(
        [
            N("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
            N("Unsqueeze", ["t", "a"], ["u"]),
            N("Squeeze", ["u", "a"], ["y"]),
        ],
        (2, 3, 1, 4),
        {"a": ints(2)},
    ),
    "concat_split": Case(
        [
            N("Relu", ["x"], ["r"]),
            N("Concat", ["x", "c", "r"], ["cat"], axis=1),
            N("Split", ["cat", "parts"], ["s0", "s1", "s2"], axis=1),
            N("Mul", ["s1", "s2"], ["y"]),
        ],
        (2, 3, 4),
        {"c": weights(2, 2, 4), "parts": ints(2, 3, 3)},
    ),
    "slice": Case(
        [N("Slice", ["x", "st", "en", "ax"], ["y"])],
        IMG,
        {"st": ints(1, -5), "en": ints(2**62, -1), "ax": ints(1, 3)},
    ),
    "pad": Case(
        [N("Pad", ["x", "p", "v"], ["y"], mode="constant")],
        IMG,
        {"p": ints(0, 0, 1, 2, 0, 0, 0, 3), "v": np.asarray(0.5)},
    ),
    "identity_dropout_cast": Case(
        [
            N("Identity", ["x"], ["i"]),
            N("Dropout", ["i"], ["d"]),
            N("Cast", ["d"], ["c"], to=F64),
            N("Tanh", ["c"], ["t"]),
            N("Cast", ["t"], ["y"], to=-1),
        ],
        IMG,
        dtype=F32,
    ),
    # normalisation
    "lrn": Case(
        [N("LRN", ["x"], ["y"], size=3, alpha=0.5, beta=0.75, bias=1.5)],
        (2, 5, 3, 3),
        dtype=F32,
        oracle=lrn(3, 0.5, 0.75, 1.5),
    ),
    "lrn_size5_opset9": Case(
        [N("LRN", ["x"], ["y"], size=5, alpha=0.3, beta=0.6)],
        (2, 6, 2, 3),
        dtype=F32,
        opset=9,
        oracle=lrn(5, 0.3, 0.6),
    ),
    "layer_norm_last_two_axes": Case(
        [N("LayerNormalization", ["x", "g", "b"], ["y"], axis=-2, epsilon=1e-3)],
        (2, 3, 4, 5),
        {"g": weights(4, 5), "b": weights(4, 5)},
        F32,
        opset=17,
    ),
    "instance_norm": Case(
        [N("InstanceNormalization", ["x", "g", "b"], ["y"], epsilon=1e-3)],
        (2, 3, 4, 5),
        {"g": weights(3), "b": weights(3)},
        F32,
    ),
    "group_norm_channel_scale": Case(
        [N("GroupNormalization", ["x", "g", "b"], ["y"], num_groups=2, epsilon=1e-3)],
        (2, 4, 3, 3),
        {"g": GN_SCALE, "b": GN_BIAS},
        F32,
        opset=21,
        oracle=group_norm(2, GN_SCALE, GN_BIAS, 1e-3),
    ),
    "group_norm_group_scale_opset18": Case(
        [N("GroupNormalization", ["x", "g", "b"], ["y"], num_groups=3)],
        (2, 6, 2, 3),
        {"g": weights(3), "b": weights(3)},
        F32,
        opset=18,
    ),
    "batch_norm_spatial_opset7": Case(
        [N("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], spatial=1, epsilon=1e-3)],
        IMG,
        BN7,
        F32,
        opset=7,
        oracle=batch_norm_7,
    ),
    # more elementwise
    "selu_celu": Case(
        [N("Selu", ["x"], ["s"], alpha=1.5, gamma=1.1), N("Celu", ["s"], ["y"], alpha=0.7)],
        IMG,
        dtype=F32,
        opset=12,
    ),
    "mish": Case([N("Mish", ["x"], ["y"])], IMG, opset=18, low=-3, high=3),
    "gelu_exact": Case(
        [N("Gelu", ["x"], ["y"])], IMG, dtype=F32, opset=20, low=-3, high=3, oracle=gelu
    ),
    "gelu_tanh": Case(
        [N("Gelu", ["x"], ["y"], approximate="tanh")], IMG, dtype=F32, opset=20, low=-3, high=3
    ),
    "erf_abs_log": Case(
        [
            N("Erf", ["x"], ["e"]),
            N("Abs", ["x"], ["a"]),
            N("Add", ["a", "one"], ["a1"]),
            N("Log", ["a1"], ["l"]),
            N("Add", ["e", "l"], ["y"]),
        ],
        IMG,
        {"one": np.asarray(1.0)},
        F32,  # onnxruntime has no double Erf
        oracle=erf_abs_log,
    ),  # fmt: skip
    "sqrt_reciprocal_pow": Case(
        [
            N("Mul", ["x", "x"], ["x2"]),
            N("Add", ["x2", "one"], ["p"]),
            N("Sqrt", ["p"], ["r"]),
            N("Reciprocal", ["p"], ["q"]),
            N("Pow", ["p", "e"], ["w"]),
            N("Pow", ["two", "x"], ["v"]),
            N("Sum", ["r", "q", "w", "v"], ["y"]),
        ],
        IMG,
        {"one": np.asarray(1.0), "e": np.asarray(-1.5), "two": weights(7) ** 2 + 0.5},
    ),
    "piecewise_constant": Case(
        [
            N("Floor", ["x"], ["f"]),
            N("Ceil", ["x"], ["c"]),
            N("Round", ["x"], ["r"]),
            N("Sign", ["x"], ["s"]),
            N("Sum", ["f", "c", "r", "s", "x"], ["y"]),
        ],
        IMG,
        low=-2,
        high=2,
    ),
    "sum_mean_max_min": Case(
        [
            N("Tanh", ["x"], ["t"]),
            N("Sum", ["x", "t", "c"], ["s"]),
            N("Mean", ["s", "x", "c"], ["m"]),
            N("Max", ["x", "t", "c"], ["hi"]),
            N("Min", ["m", "x"], ["lo"]),
            N("Mul", ["hi", "lo"], ["y"]),
        ],
        (2, 3, 4),
        {"c": weights(4)},
        F32,  # onnxruntime has no double Mean
    ),
    "max_min_opset9": Case(
        [N("Max", ["x", "c"], ["hi"]), N("Min", ["hi", "d"], ["y"])],
        (2, 3, 4),
        {"c": weights(3, 1) * 0.1, "d": RNG.uniform(0.3, 0.8, size=4)},
        opset=9,
    ),
    # more reductions
    "reduce_max_min_axes_input": Case(
        [
            N("ReduceMax", ["x", "a"], ["hi"], keepdims=0),
            N("ReduceMin", ["x", "a"], ["lo"], keepdims=0),
            N("Mul", ["hi", "lo"], ["y"]),
        ],
        IMG,
        {"a": ints(1, -1)},
    ),
    "reduce_l1_l2_sumsquare_lse_opset13": Case(
        [
            N("ReduceL2", ["x"], ["a"], axes=[2], keepdims=1),
            N("ReduceLogSumExp", ["x"], ["b"], axes=[2], keepdims=1),
            N("ReduceL1", ["x"], ["c"], axes=[2], keepdims=1),
            N("ReduceSumSquare", ["x"], ["d"], axes=[2], keepdims=1),
            N("Sum", ["a", "b", "c", "d"], ["y"]),
        ],
        IMG,
        opset=13,
    ),
    "softmax_opset9_coerced": Case(
        [N("Softmax", ["x"], ["y"], axis=1)], (2, 3, 2, 2), opset=9, oracle=coerced_softmax
    ),
    # attention-style batched products and Einsum
    "attention": Case(
        [
            N("MatMul", ["x", "wq"], ["q"]),
            N("MatMul", ["x", "wk"], ["k"]),
            N("MatMul", ["x", "wv"], ["v"]),
            N("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
            N("MatMul", ["q", "kt"], ["s"]),
            N("Softmax", ["s"], ["p"], axis=-1),
            N("MatMul", ["p", "v"], ["y"]),
        ],
        (2, 2, 3, 4),
        {"wq": weights(4, 4), "wk": weights(4, 4), "wv": weights(4, 4)},
    ),
    "einsum_channel_mix": Case(
        [N("Einsum", ["x", "w"], ["y"], equation="nchw,kc->nkhw")],
        (2, 3, 2, 2),
        {"w": weights(4, 3)},
    ),
    "einsum_both_operands_implicit": Case(
        [N("Tanh", ["x"], ["t"]), N("Einsum", ["x", "t"], ["y"], equation="ij,kj")], (2, 4)
    ),
    "einsum_ellipsis": Case(
        [N("Einsum", ["x", "w"], ["y"], equation="...ij,...jk->...ik")],
        (2, 3, 4),
        {"w": weights(2, 4, 2)},
    ),
    # constant-index gathers and copies
    "gather_constant_indices": Case(
        [N("Gather", ["x", "i"], ["y"], axis=2)], (2, 3, 4, 2), {"i": ints(3, 0, -1, 1, 3)}
    ),
    "gather_leading_axis_before_batch": Case(
        [
            N("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
            N("Gather", ["t", "i"], ["g"], axis=0),
            N("Transpose", ["g"], ["y"], perm=[1, 0, 2]),
        ],
        (2, 3, 4),
        {"i": ints(2, 0, 2)},
    ),
    "gather_scalar_index": Case(
        [N("Gather", ["x", "i"], ["y"], axis=1)], (2, 3, 4), {"i": np.asarray(1)}
    ),
    "gather_computed_as_strided": Case(  # dynamo's as_strided: flatten, gather a Range
        [
            N("Reshape", ["x", "minus1"], ["flat"]),
            N("Size", ["x"], ["n"]),
            N("Range", ["zero", "n", "two"], ["r"]),
            N("Gather", ["flat", "r"], ["g"], axis=0),
            N("Shape", ["x"], ["s"]),
            N("Slice", ["s", "start", "stop"], ["batch"]),
            N("Concat", ["batch", "minus1"], ["rows"], axis=0),
            N("Reshape", ["g", "rows"], ["y"]),
        ],
        (2, 3, 4),
        {
            "minus1": ints(-1),
            "zero": np.asarray(0),
            "two": np.asarray(2),
            "start": ints(0),
            "stop": ints(1),
        },  # fmt: skip
    ),
    "gather_computed_repeats_negative_axis1": Case(
        [
            N("Shape", ["x"], ["s"]),
            N("Gather", ["s", "one"], ["c"]),
            N("Range", ["zero", "c", "one"], ["r"]),
            N("Sub", ["r", "c"], ["negative"]),
            N("Concat", ["r", "negative"], ["i"], axis=0),
            N("Gather", ["x", "i"], ["y"], axis=1),
        ],
        (2, 3, 4),
        {"one": np.asarray(1), "zero": np.asarray(0)},
    ),
    "gather_elements_repeats": Case(
        [N("GatherElements", ["x", "i"], ["y"], axis=1)],
        (2, 3),
        {"i": ints(0, 2, 2, 1, 1, 1, 0, 0).reshape(2, 4)},
    ),
    "gather_elements_unique_opset11": Case(
        [N("GatherElements", ["x", "i"], ["y"], axis=1)],
        (2, 3),
        {"i": ints(2, 0, 1, 0).reshape(2, 2)},
        opset=11,
    ),
    "tile": Case([N("Tile", ["x", "r"], ["y"])], (2, 3, 2), {"r": ints(1, 2, 3)}),
    "depth_to_space_dcr_crd": Case(
        [
            N("DepthToSpace", ["x"], ["d"], blocksize=2),
            N("SpaceToDepth", ["d"], ["s"], blocksize=2),
            N("DepthToSpace", ["s"], ["y"], blocksize=2, mode="CRD"),
        ],
        (2, 8, 2, 3),
    ),
    "upsample_opset9": Case(
        [N("Upsample", ["x", "s"], ["y"], mode="nearest")],
        (2, 2, 3, 3),
        {"s": np.asarray([1, 1, 2, 3], np.float32)},
        F32,
        opset=9,
    ),
    "upsample_opset7_attribute": Case(
        [N("Upsample", ["x"], ["y"], scales=[1.0, 1.0, 2.0, 3.0])],
        (2, 2, 3, 4),
        dtype=F32,
        opset=7,
        oracle=nearest((1, 1, 2, 3)),
    ),
    "upsample_linear_opset9": Case(
        [N("Upsample", ["x", "s"], ["y"], mode="linear")],
        (2, 1, 3, 4),
        {"s": np.asarray([1, 1, 2, 2], np.float32)},
        F32,
        opset=9,
        oracle=upsample_linear(2),
    ),
    "resize_opset10": Case(
        [N("Resize", ["x", "s"], ["y"])],
        (2, 1, 3, 4),
        {"s": np.asarray([1, 1, 2, 1.5], np.float32)},
        F32,
        opset=10,
        oracle=nearest((1, 1, 2, 1.5)),
    ),
    "lp_pool": Case(
        [N("LpPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[1, 1], p=3)], IMG, dtype=F32
    ),
    "lp_pool_p2_tiled": Case(
        [N("LpPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], (2, 2, 6, 6), dtype=F32
    ),
    # non-differentiable shape arithmetic passes through
    "shape_arithmetic": Case(
        [
            N("Shape", ["x"], ["s"]),
            N("Gather", ["s", "one"], ["c"]),
            N("Range", ["zero", "c", "step"], ["r"]),
            N("Equal", ["r", "two"], ["e"]),
            N("Cast", ["e"], ["ef"], to=-1),
            N("Reshape", ["ef", "col"], ["m"]),
            N("ConstantOfShape", ["s"], ["ones"], value=numpy_helper.from_array(np.ones(1))),
            N("Greater", ["x", "ones"], ["big"]),
            N("Where", ["big", "ones", "x"], ["w"]),
            N("Mul", ["w", "m"], ["y"]),
        ],
        (2, 3, 4),
        {
            "one": np.asarray(1),
            "zero": np.asarray(0),
            "step": np.asarray(1),
            "two": np.asarray(2),
            "col": ints(1, -1, 1),
        },
        low=-1.5,
        high=1.5,
    ),  # fmt: skip
    # attribute forms of opsets 9-12 (rules read them; backward emitted in the same opset)
    "slice_pad_clip_attributes_opset9": Case(
        [
            N("Slice", ["x"], ["s"], starts=[1, -3], ends=[3, 100], axes=[1, 2]),
            N("Pad", ["s"], ["p"], pads=[0, 1, 0, 0, 0, 2, 1, 0], value=0.5),
            N("Clip", ["p"], ["y"], min=-0.4, max=0.6),
        ],
        (2, 4, 5, 3),
        dtype=F32,
        opset=9,
    ),
    "split_squeeze_attributes_opset11": Case(
        [
            N("Split", ["x"], ["a", "b"], axis=1, split=[1, 2]),
            N("Unsqueeze", ["b"], ["u"], axes=[0]),
            N("Squeeze", ["u"], ["v"], axes=[0]),
            N("Concat", ["v", "a"], ["c"], axis=1),
            N("ReduceSum", ["c"], ["r"], axes=[2], keepdims=0),
            N("Mul", ["r", "r"], ["y"]),
        ],
        (2, 3, 4),
        opset=11,
    ),
    "maxpool_overlap_opset9": Case(
        [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
        IMG,
        dtype=F32,
        opset=9,
    ),
    "maxpool_tiled_opset9_dropout_ratio": Case(
        [
            N("MaxPool", ["x"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
            N("Dropout", ["m"], ["y"], ratio=0.3),
        ],
        (2, 2, 6, 6),
        dtype=F32,
        opset=9,
    ),
    "opset11_converted": Case(
        [
            N("Unsqueeze", ["x"], ["u"], axes=[1]),
            N("ReduceSum", ["u"], ["r"], axes=[2], keepdims=1),
            N("Softmax", ["r"], ["y"], axis=-1),
        ],
        (2, 3, 4),
        opset=11,
    ),
}


def directional_error(case: Case) -> float:
    """Relative error of <input_grad, d> against central differences, over 4 directions."""
    x = RNG.uniform(case.low, case.high, size=case.shape)
    if case.oracle is None:
        reference = ReferenceEvaluator(case.model(F64))

        def forward(z: np.ndarray) -> np.ndarray:
            return reference.run(None, {"x": z})[0]
    else:

        def forward(z: np.ndarray) -> np.ndarray:
            return case.oracle(z).reshape(len(z), -1)

    logits = forward(x)
    v = RNG.normal(size=logits.shape)
    result = InputGradient(case.model(case.dtype), VectorJacobian(), device="cpu")(x, v)
    np.testing.assert_allclose(result.logits, logits, rtol=1e-4, atol=1e-5)

    def f(z: np.ndarray) -> float:
        return float((forward(z) * v).sum())

    h = 1e-6
    directions = RNG.normal(size=(4, *case.shape))
    numeric = np.array([(f(x + h * d) - f(x - h * d)) / (2 * h) for d in directions])
    analytic = np.array([(result.input_grad * d).sum() for d in directions])
    return float(np.linalg.norm(numeric - analytic) / np.linalg.norm(numeric))


@pytest.mark.parametrize("name", CASES)
def test_rule_matches_finite_differences(name: str) -> None:
    error = directional_error(CASES[name])
    assert error <= 1e-4, f"{name}: relative error {error:.2e}"


def test_every_required_op_has_a_rule_and_a_case() -> None:
    required = """Conv Gemm MatMul Add Sub Mul Div Relu LeakyRelu PRelu Clip Sigmoid Tanh HardSigmoid
    HardSwish Softplus Elu BatchNormalization MaxPool AveragePool GlobalAveragePool GlobalMaxPool
    ReduceMean ReduceSum Flatten Reshape Transpose Squeeze Unsqueeze Concat Split Slice Pad Identity
    Dropout Softmax LogSoftmax Resize Cast LRN Sum Mean Max Min ReduceMax ReduceMin ReduceL2
    ReduceLogSumExp Pow Sqrt Reciprocal Erf Gelu LayerNormalization InstanceNormalization
    GroupNormalization Gather GatherElements Tile Expand Einsum DepthToSpace SpaceToDepth Upsample
    Mish Selu Celu LpPool""".split()
    assert set(required) <= set(RULES)
    exercised = {n.op_type for case in CASES.values() for n in case.nodes} | {"Flatten"}
    assert set(RULES) <= exercised


@pytest.mark.parametrize(
    "kernel, stride, pad, ceil, opset",
    [
        (3, 2, 1, 0, 18),
        (3, 2, 1, 0, 11),
        (3, 2, 0, 1, 11),
        (2, 2, 0, 0, 18),
        (2, 2, 1, 0, 18),
        (2, 2, 0, 1, 18),
        (3, 3, 0, 1, 18),
    ],
    ids=[
        "overlapping_scatter",
        "overlapping_onehot_opset11",
        "overlapping_onehot_ceil_opset11",
        "tiling",
        "tiling_padded",
        "tiling_ceil",
        "tiling_k3_ceil",
    ],
)
def test_maxpool_ties_route_to_first_cell(
    kernel: int, stride: int, pad: int, ceil: int, opset: int
) -> None:
    """Tied windows: torch and onnxruntime give the gradient to the first cell (row-major)."""
    attrs = dict(kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=[pad] * 4, ceil_mode=ceil)
    case = Case([N("MaxPool", ["x"], ["y"], **attrs)], (1, 1, 5, 5), opset=opset)
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = x[0, 0, 2, 3] = x[0, 0, 3, 2] = 1.0  # ties inside windows, and across them
    out = ReferenceEvaluator(case.model(F64)).run(None, {"x": x})[0].size
    side = int(np.sqrt(out))
    v = np.arange(1, out + 1, dtype=float)[None, :]
    grad = InputGradient(case.model(F32), VectorJacobian(), device="cpu")(x, v).input_grad[0, 0]
    expected = np.zeros((5, 5))
    padded = np.pad(x[0, 0], (pad, pad + kernel), constant_values=-np.inf)
    for k, (i, j) in enumerate(np.ndindex(side, side)):
        window = padded[stride * i : stride * i + kernel, stride * j : stride * j + kernel]
        r, c = np.unravel_index(np.argmax(window), window.shape)  # first maximum
        expected[stride * i + r - pad, stride * j + c - pad] += v[0, k]
    np.testing.assert_array_equal(grad, expected)


def test_unsupported_op_is_refused_before_any_work() -> None:
    case = Case(
        [N("Relu", ["x"], ["r"]), N("Sin", ["r"], ["s"], name="odd"), N("Relu", ["s"], ["y"])], IMG
    )
    with pytest.raises(AuditError, match="unsupported op Sin at node 'odd'"):
        build_gradient_model(case.model(F64), VectorJacobian())


def test_input_dependent_weights_are_refused() -> None:
    case = Case([N("Conv", ["x", "x"], ["y"])], (1, 1, 3, 3), dtype=F32)
    with pytest.raises(AuditError, match="input 1"):
        build_gradient_model(case.model(F32))


def test_training_mode_batch_norm_is_refused() -> None:
    case = Case(
        [N("BatchNormalization", ["x", "g", "g", "g", "g"], ["y"], training_mode=1)],
        IMG,
        {"g": np.ones(2)},
    )
    with pytest.raises(AuditError, match="training mode"):
        build_gradient_model(case.model(F64))


def test_unknown_spatial_dims_are_refused() -> None:
    model = CASES["conv_pads"].model(F32)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(AuditError, match="static dims"):
        build_gradient_model(model)


def test_wrt_tensor_gradient_and_dynamic_batch() -> None:
    """grad:<t> of an intermediate equals the VJP of the tail; batch sizes 1 and 5 both run."""
    nodes = [conv("t", pads=[1, 1, 1, 1]), N("Tanh", ["t"], ["y"])]
    model = Case(nodes, IMG, CONV_INITS, F32).model(F32)
    proto = build_gradient_model(model, VectorJacobian(), wrt_tensors=["t"])
    assert [o.name for o in proto.graph.output] == ["loss", "logits", "input_grad", "grad:t"]
    from onnxaudit.features.runtime import create_session

    session = create_session(proto, "cpu")
    for batch in (1, 5):
        x = RNG.uniform(size=(batch, *IMG[1:])).astype(np.float32)
        v = RNG.normal(size=(batch, 3 * 49)).astype(np.float32)
        loss, logits, grad, grad_t = session.run(None, {"x": x, "grad_logits": v})
        assert grad.shape == x.shape
        expected = v * (1 - logits**2)  # d sum(v * tanh(t)) / dt, with logits = tanh(t)
        np.testing.assert_allclose(grad_t.reshape(batch, -1), expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(loss, (logits * v).sum(), rtol=1e-5)


def test_shapes_unknown_to_inference_are_probed() -> None:
    """A reshape target computed through float arithmetic defeats onnx shape inference (as in
    Paddle and tf2onnx exports); probing onnxruntime at two batch sizes recovers the dims."""
    nodes = [
        N("Shape", ["x"], ["s"]),
        N("Cast", ["s"], ["sf"], to=-1),
        N("Mul", ["sf", "half"], ["hf"]),
        N("Cast", ["hf"], ["h"], to=TensorProto.INT64),
        N("Slice", ["h", "one", "two"], ["c2"]),
        N("Slice", ["s", "three", "four"], ["w3"]),
        N("Concat", ["n", "c2", "minus1", "w3"], ["target"], axis=0),
        N("Reshape", ["x", "target"], ["r"]),
        N("Softmax", ["r"], ["t"], axis=1),
        N("Conv", ["t", "w"], ["y"]),
    ]
    inits = {
        "half": np.asarray([1, 0.5, 1, 1], np.float32),
        "one": ints(1),
        "two": ints(2),
        "three": ints(3),
        "four": ints(4),
        "n": ints(0),
        "minus1": ints(-1),
        "w": weights(3, 2, 1, 3),
    }
    case = Case(nodes, (2, 4, 2, 3), inits, F32)
    model = onnx.shape_inference.infer_shapes(case.model(F32), data_prop=True)
    reshaped = next(v.type.tensor_type for v in model.graph.value_info if v.name == "r")
    assert not reshaped.shape.dim[1].HasField("dim_value")  # inference cannot tell
    assert directional_error(case) <= 1e-4
