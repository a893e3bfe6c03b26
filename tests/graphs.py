"""Small classifiers built with onnx.helper, so tests know every weight and need no zoo."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _init(rng: np.random.Generator, name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), name)


def small_cnn(
    seed: int = 0, nhwc: bool = False, size: int = 8, classes: int = 3
) -> onnx.ModelProto:
    """Conv-Relu-MaxPool-Conv-Relu-GlobalAveragePool-Flatten-Gemm, dynamic batch.

    With `nhwc`, the input is (N, H, W, 3) and the graph transposes around the convolutions the way
    tf2onnx does, so one feature map is also materialised in NHWC.
    """
    rng = np.random.default_rng(seed)
    channels = 3 if nhwc else 1
    shape = ["N", size, size, channels] if nhwc else ["N", channels, size, size]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])
    inits = [
        _init(rng, "w1", 4, channels, 3, 3),
        _init(rng, "b1", 4),
        _init(rng, "w2", 6, 4, 3, 3),
        _init(rng, "b2", 6),
        _init(rng, "fc_w", classes, 6),
        _init(rng, "fc_b", classes),
    ]
    nodes = []
    first = "x"
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2]))
        first = "x_nchw"
    nodes += [
        helper.make_node("Conv", [first, "w1", "b1"], ["conv1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool1", "w2", "b2"], ["conv2"], pads=[1, 1, 1, 1]),
    ]
    if nhwc:
        nodes += [
            helper.make_node("Transpose", ["conv2"], ["conv2_nhwc"], perm=[0, 2, 3, 1]),
            helper.make_node("Relu", ["conv2_nhwc"], ["relu2_nhwc"]),
            helper.make_node("Transpose", ["relu2_nhwc"], ["relu2"], perm=[0, 3, 1, 2]),
        ]
    else:
        nodes.append(helper.make_node("Relu", ["conv2"], ["relu2"]))
    nodes += [
        helper.make_node("GlobalAveragePool", ["relu2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "small_cnn", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
