"""Find the class scores a classifier computes, before any final Softmax, and refuse non-classifiers.

Probabilities are not logits: every analysis (knowledge points, patterns, gradients) reads the
scores that a final Softmax/LogSoftmax normalises. The prepared graph's only output is those
scores, (N, K); a sigmoid-ended binary model becomes the two-class scores [0, z].
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper

from onnxaudit.errors import AuditError
from onnxaudit.model.graph import (
    FLOAT_TYPES,
    copy_model,
    node_label,
    producers,
    remove_dead_nodes,
    unique_name,
)
from onnxaudit.model.shapes import ShapeTable

# Ops between the class scores and the output that only restate them.
PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout", "Cast"}
NORMALISERS = {"Softmax", "LogSoftmax"}


@dataclass(frozen=True)
class ClassScores:
    """The (N, K) tensor the analyses read as logits, and why it was chosen."""

    name: str
    num_classes: int
    reason: str


def use_class_scores(
    model: onnx.ModelProto, table: ShapeTable, path: object = None
) -> tuple[onnx.ModelProto, ClassScores]:
    """The model with the class scores as its only output, and their description."""
    model = copy_model(model)
    graph = model.graph
    output = _first_float_output(graph, table, path)
    source, final = _behind_pass_through(graph, output)
    if final is not None and final.op_type in NORMALISERS:
        scores = final.input[0]
        reason = f"input of the final {node_label(final)}: the class scores before normalisation"
    elif final is not None and final.op_type == "Sigmoid":
        scores = final.input[0]
        reason = f"two-class scores [0, z] from the input z of the final {node_label(final)}"
    else:
        scores = output
        reason = "the model's output (it does not end in Softmax, LogSoftmax or Sigmoid)"
    shape = table.dims.get(scores)
    num_classes = _num_classes(scores, shape, path)
    binary = final is not None and final.op_type == "Sigmoid"
    if num_classes == 1 and binary:
        scores, num_classes = _two_class(graph, scores, shape), 2
    elif num_classes < 2:
        raise AuditError(
            f"not an image classifier: its output {output!r} holds a single score {shape} "
            "(expected one score per class, at least 2)",
            path,
        )
    elif len(shape) != 2:
        scores = _flattened(graph, scores)
    batch = shape[0]
    del graph.output[:]
    elem_type = table.types.get(source if binary else scores, onnx.TensorProto.FLOAT)
    if elem_type not in FLOAT_TYPES:
        elem_type = onnx.TensorProto.FLOAT
    graph.output.append(helper.make_tensor_value_info(scores, elem_type, [batch, num_classes]))
    remove_dead_nodes(graph)
    return model, ClassScores(scores, num_classes, reason)


def _first_float_output(graph: onnx.GraphProto, table: ShapeTable, path: object) -> str:
    if not graph.output:
        raise AuditError("the model has no output", path)
    for out in graph.output:
        shape = table.dims.get(out.name)
        if table.types.get(out.name) in FLOAT_TYPES and shape is not None and len(shape) >= 2:
            return out.name
    first = graph.output[0].name
    raise AuditError(
        f"not an image classifier: no output holds float scores (N, K); the first, {first!r}, "
        f"has shape {table.dims.get(first)}",
        path,
    )


def _behind_pass_through(graph: onnx.GraphProto, output: str) -> tuple[str, onnx.NodeProto | None]:
    """The first tensor behind `output` that is not a mere restatement, and its producer."""
    made_by = producers(graph)
    tensor = output
    while tensor in made_by and made_by[tensor].op_type in PASS_THROUGH:
        tensor = made_by[tensor].input[0]
    return tensor, made_by.get(tensor)


def _num_classes(scores: str, shape: list | None, path: object) -> int:
    """K of an (N, K) score tensor, allowing trailing singleton dims such as (N, K, 1, 1)."""
    if shape is None or len(shape) < 2:
        raise AuditError(
            f"cannot read the number of classes: the shape of {scores!r} is {shape}", path
        )
    rest = shape[1:]
    wide = [d for d in rest if d != 1]
    if any(not isinstance(d, int) for d in rest) or len(wide) > 1 or (wide and rest[0] == 1):
        raise AuditError(
            f"not an image classifier: its scores {scores!r} have shape {shape} "
            "(spatial or sequence dims; expected (N, K) class scores)",
            path,
        )
    return wide[0] if wide else 1


def _flattened(graph: onnx.GraphProto, tensor: str) -> str:
    name = unique_name(graph, "onnxaudit_logits")
    graph.node.append(helper.make_node("Flatten", [tensor], [name], axis=1, name=name))
    return name


def _two_class(graph: onnx.GraphProto, z: str, shape: list) -> str:
    """[0, z]: softmax of it gives (1 - sigmoid(z), sigmoid(z))."""
    if len(shape) != 2:
        z = _flattened(graph, z)
    zero = unique_name(graph, "onnxaudit_zero_score")
    name = unique_name(graph, "onnxaudit_logits")
    graph.node.extend(
        [
            helper.make_node("Sub", [z, z], [zero], name=zero),
            helper.make_node("Concat", [zero, z], [name], axis=1, name=name),
        ]
    )
    return name
