"""Each backward rule against finite differences of the forward graph.

Every case is a tiny graph x -> op(s) -> Flatten -> logits. The gradient model runs in
onnxruntime (float64 where onnxruntime has double kernels, else float32); the oracle is a central
finite difference of sum(logits * v) along random directions, evaluated in float64 by
onnx.reference.ReferenceEvaluator, so neither onnxruntime nor the rules judge themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

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
    oracle = ReferenceEvaluator(case.model(F64))
    logits = oracle.run(None, {"x": x})[0]
    v = RNG.normal(size=logits.shape)
    result = InputGradient(case.model(case.dtype), VectorJacobian(), device="cpu")(x, v)
    np.testing.assert_allclose(result.logits, logits, rtol=1e-4, atol=1e-5)

    def f(z: np.ndarray) -> float:
        return float((oracle.run(None, {"x": z})[0] * v).sum())

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
    Dropout Softmax LogSoftmax Resize Cast""".split()
    assert set(required) <= set(RULES)
    exercised = {n.op_type for case in CASES.values() for n in case.nodes} | {"Flatten"}
    assert set(RULES) <= exercised


@pytest.mark.parametrize(
    "kernel, stride, pad, ceil",
    [(3, 2, 1, 0), (2, 2, 0, 0), (2, 2, 1, 0), (2, 2, 0, 1), (3, 3, 0, 1)],
    ids=["overlapping", "tiling", "tiling_padded", "tiling_ceil", "tiling_k3_ceil"],
)
def test_maxpool_ties_route_to_first_cell(kernel: int, stride: int, pad: int, ceil: int) -> None:
    """Tied windows: torch and onnxruntime give the gradient to the first cell (row-major)."""
    attrs = dict(kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=[pad] * 4, ceil_mode=ceil)
    case = Case([N("MaxPool", ["x"], ["y"], **attrs)], (1, 1, 5, 5))
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
