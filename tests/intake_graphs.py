"""The intake corpus: graphs shaped like real third-party exports, with seeded random weights.

- the nine `onnx` wheel "light" zoo graphs (old opsets, fixed batch 1, 224x224, 1000 classes,
  weights made by ConstantOfShape), their constant weights replaced by seeded random ones;
- a Paddle-style graph with dynamic H/W and a Shape-computed flatten;
- a tf2onnx-style NHWC graph whose Pad amounts are computed from Shape;
- a BGR, 0-255 graph, and a Softmax-ended / Sigmoid-ended variant of the small CNN.
"""

from __future__ import annotations

import numpy as np
import onnx
from graphs import small_cnn
from light import LIGHT, light_model
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def light_graph(name: str, seed: int = 0) -> onnx.ModelProto:
    """A light zoo graph with seeded random weights (tests/light.py), every initializer listed as
    a graph input under the file's own IR version, as these old exports do (IR 3)."""
    ir_version = onnx.load(LIGHT / f"light_{name}.onnx").ir_version
    model = light_model(name, seed)
    graph = model.graph
    for tensor in graph.initializer:
        graph.input.append(
            helper.make_tensor_value_info(tensor.name, tensor.data_type, tuple(tensor.dims))
        )
    model.ir_version = ir_version
    return model


def _model(nodes, inputs, outputs, inits, opset: int = OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "intake", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _init(rng, name, *shape) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), name)


def _ints(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def with_final(
    model: onnx.ModelProto, op: str = "Softmax", reshape: bool = False
) -> onnx.ModelProto:
    """The same classifier with a final `op` (Softmax, LogSoftmax, Sigmoid) behind an Identity."""
    model = _copy(model)
    graph = model.graph
    scores = graph.output[0].name
    nodes = [
        helper.make_node(op, [scores], ["probs_raw"], **({} if op == "Sigmoid" else {"axis": 1}))
    ]
    if reshape:
        graph.initializer.append(_ints("flat_shape", [0, -1]))
        nodes.append(helper.make_node("Reshape", ["probs_raw", "flat_shape"], ["probs_flat"]))
    nodes.append(helper.make_node("Identity", [nodes[-1].output[0]], ["probs"]))
    graph.node.extend(nodes)
    out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, None)
    out.type.CopyFrom(graph.output[0].type)
    del graph.output[:]
    graph.output.append(out)
    onnx.checker.check_model(model)
    return model


def binary_cnn(seed: int = 0) -> onnx.ModelProto:
    """A sigmoid-ended binary classifier: one score z, probability sigmoid(z)."""
    return with_final(small_cnn(seed=seed, classes=1), "Sigmoid")


def paddle_style(seed: int = 0, classes: int = 4) -> onnx.ModelProto:
    """Paddle2ONNX-like: input [-1, 3, "?", "?"], flatten through Shape/Slice/Concat, MatMul+Add, Softmax."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])  # as Paddle writes
    y = helper.make_tensor_value_info("softmax_0.tmp_0", TensorProto.FLOAT, [-1, classes])
    inits = [
        _init(rng, "conv0.w_0", 8, 3, 3, 3),
        _init(rng, "conv1.w_0", 8, 8, 3, 3),
        _init(rng, "fc.w_0", 8, classes),
        _init(rng, "fc.b_0", classes),
        _ints("zero", [0]),
        _ints("one", [1]),
        _ints("minus_one", [-1]),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["x", "conv0.w_0"], ["conv2d_0.tmp_0"], pads=[1, 1, 1, 1], strides=[2, 2]
        ),
        helper.make_node("Relu", ["conv2d_0.tmp_0"], ["relu_0.tmp_0"]),
        helper.make_node(
            "Conv", ["relu_0.tmp_0", "conv1.w_0"], ["conv2d_1.tmp_0"], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["conv2d_1.tmp_0"], ["relu_1.tmp_0"]),
        helper.make_node("GlobalAveragePool", ["relu_1.tmp_0"], ["pool2d_0.tmp_0"]),
        helper.make_node("Shape", ["pool2d_0.tmp_0"], ["shape_0"]),
        helper.make_node("Slice", ["shape_0", "zero", "one"], ["batch_dim"]),
        helper.make_node("Concat", ["batch_dim", "minus_one"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["pool2d_0.tmp_0", "flat_shape"], ["flatten_0.tmp_0"]),
        helper.make_node("MatMul", ["flatten_0.tmp_0", "fc.w_0"], ["linear_0.tmp_0"]),
        helper.make_node("Add", ["linear_0.tmp_0", "fc.b_0"], ["linear_0.tmp_1"]),
        helper.make_node("Softmax", ["linear_0.tmp_1"], ["softmax_0.tmp_0"], axis=-1),
    ]
    return _model(nodes, [x], [y], inits)


def tf2onnx_style(seed: int = 0, size: int = 16, classes: int = 3) -> onnx.ModelProto:
    """tf2onnx-like NHWC: 'SAME' padding computed from Shape, Transposes around each Conv."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__0", size, size, 3])
    y = helper.make_tensor_value_info("Identity:0", TensorProto.FLOAT, ["unk__0", classes])
    inits = [
        _init(rng, "conv/kernel", 8, 3, 3, 3),
        _init(rng, "conv/bias", 8),
        _init(rng, "dense/kernel", 8, classes),
        _init(rng, "dense/bias", classes),
        _ints("hw_idx", [1, 2]),
        _ints("stride", [2, 2]),
        _ints("kernel_minus_stride", [1, 1]),
        _ints("two", [2, 2]),
        _ints("zero2", [0, 0]),
        _ints("zero1", [0]),
    ]
    nodes = [
        # SAME padding for a 3x3 stride-2 conv: total = max(k - s + (s - H % s) % s, 0) ~ here k - s + H % s
        helper.make_node("Shape", ["input_1"], ["shape"]),
        helper.make_node("Gather", ["shape", "hw_idx"], ["hw"], axis=0),
        helper.make_node("Mod", ["hw", "stride"], ["hw_mod"]),
        helper.make_node("Add", ["kernel_minus_stride", "hw_mod"], ["pad_total"]),
        helper.make_node("Div", ["pad_total", "two"], ["pad_begin"]),
        helper.make_node("Sub", ["pad_total", "pad_begin"], ["pad_end"]),
        helper.make_node(
            "Concat", ["zero1", "pad_begin", "zero1", "zero1", "pad_end", "zero1"], ["pads"], axis=0
        ),
        helper.make_node("Pad", ["input_1", "pads"], ["padded"], mode="constant"),
        helper.make_node("Transpose", ["padded"], ["padded_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "Conv", ["padded_nchw", "conv/kernel", "conv/bias"], ["conv_nchw"], strides=[2, 2]
        ),
        helper.make_node("Transpose", ["conv_nchw"], ["conv/BiasAdd:0"], perm=[0, 2, 3, 1]),
        helper.make_node("Relu", ["conv/BiasAdd:0"], ["conv/Relu:0"]),
        helper.make_node("ReduceMean", ["conv/Relu:0"], ["gap"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["gap", "dense/kernel"], ["dense/MatMul:0"]),
        helper.make_node("Add", ["dense/MatMul:0", "dense/bias"], ["dense/BiasAdd:0"]),
        helper.make_node("Softmax", ["dense/BiasAdd:0"], ["Identity:0"], axis=-1),
    ]
    return _model(nodes, [x], [y], inits, opset=13)


BGR_MEAN = (103.53, 116.28, 123.675)  # B, G, R in 0-255 units, as model cards state them
BGR_STD = (57.375, 57.12, 58.395)


def bgr_255(seed: int = 0, classes: int = 3, metadata: bool = False) -> onnx.ModelProto:
    """A classifier that expects BGR pixels in 0-255, normalised outside, with a dynamic size.

    The first conv is sensitive to channel order, so feeding RGB would change its scores.
    With `metadata`, the settings are stored in `metadata_props` as an exporter could.
    """
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes])
    inits = [_init(rng, "w1", 6, 3, 3, 3), _init(rng, "w2", classes, 6, 1, 1)]
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p1"], ["gap"]),
        helper.make_node("Conv", ["gap", "w2"], ["head"]),
        helper.make_node("Flatten", ["head"], ["scores"]),
    ]
    model = _model(nodes, [x], [y], inits)
    if metadata:
        import json

        prep = {
            "input_shape": [3, 12, 12],
            "channel_order": "bgr",
            "input_scale": 255,
            "mean": BGR_MEAN,
            "std": BGR_STD,
        }
        onnx.helper.set_model_props(model, {"preprocessing": json.dumps(prep)})
    return model


def bgr_reference_input(x_rgb: np.ndarray) -> np.ndarray:
    """What the BGR 0-255 model expects for RGB [0, 1] images x (N, 3, H, W)."""
    bgr = x_rgb[:, ::-1] * 255.0
    mean = np.asarray(BGR_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(BGR_STD, np.float32).reshape(1, 3, 1, 1)
    return ((bgr - mean) / std).astype(np.float32)


def not_classifier(kind: str) -> onnx.ModelProto:
    """Graphs that are not image classifiers: a detector map, a sequence head, one score."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    if kind == "detector":  # N x 1 x H x W probability map
        nodes = [
            helper.make_node("Conv", ["x", "w"], ["map"], pads=[1, 1, 1, 1]),
            helper.make_node("Sigmoid", ["map"], ["prob"]),
        ]
        inits = [_init(rng, "w", 1, 3, 3, 3)]
        out = ["N", 1, 8, 8]
    elif kind == "sequence":  # N x T x K recogniser scores
        nodes = [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Reshape", ["c", "seq_shape"], ["seq"]),
            helper.make_node("Softmax", ["seq"], ["prob"], axis=-1),
        ]
        inits = [_init(rng, "w", 6, 3, 3, 3), _ints("seq_shape", [0, 8, 48])]
        out = ["N", 8, 48]
    else:  # a single score without a sigmoid
        nodes = [
            helper.make_node("GlobalAveragePool", ["x"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("Gemm", ["f", "w"], ["prob"], transB=1),
        ]
        inits = [_init(rng, "w", 1, 3)]
        out = ["N", 1]
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, out)
    return _model(nodes, [x], [y], inits)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def tensor_values(
    model: onnx.ModelProto, tensor: str, x: np.ndarray, per_image: bool = False
) -> np.ndarray:
    """`tensor` of the original `model` on input `x`, by onnxruntime with it exposed as an output.

    `per_image` runs one image at a time, for graphs with a fixed batch of 1.
    """
    from onnxaudit.features.runtime import create_session

    exposed = _copy(model)
    if tensor not in {o.name for o in exposed.graph.output}:
        exposed.graph.output.append(onnx.ValueInfoProto(name=tensor))
    initializers = {t.name for t in exposed.graph.initializer}
    image = next(i.name for i in exposed.graph.input if i.name not in initializers)
    session = create_session(exposed, device="cpu")
    batches = [x[i : i + 1] for i in range(len(x))] if per_image else [x]
    return np.concatenate([session.run([tensor], {image: batch})[0] for batch in batches])
