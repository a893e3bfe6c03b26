"""Small read-only queries on an ONNX graph that every model module needs."""

from __future__ import annotations

from collections import defaultdict

import onnx
from onnx import TensorProto

from onnxaudit.errors import AuditError

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
NCHW_FROM_NHWC = (0, 3, 1, 2)
Dim = int | str | None


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def dims(value_info: onnx.ValueInfoProto) -> list[Dim] | None:
    """The declared dims of a tensor: int, symbolic name, or None; None when the rank is unknown."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in tensor_type.shape.dim
    ]


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The inputs that are fed at run time (old exporters also list the initializers)."""
    initializers = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in initializers]


def image_input(graph: onnx.GraphProto, path: object = None) -> onnx.ValueInfoProto:
    inputs = graph_inputs(graph)
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise AuditError(f"expected one image input, found {len(inputs)} ({names})", path)
    return inputs[0]


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output if out}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                found[name].append(node)
    return found


def constant_names(graph: onnx.GraphProto) -> set[str]:
    """Initializers and Constant outputs: tensors that hold weights, never activations."""
    names = {t.name for t in graph.initializer}
    return names | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def dependents(graph: onnx.GraphProto, source: str) -> set[str]:
    """Every tensor computed from `source` (nodes are in topological order)."""
    reached = {source}
    for node in graph.node:
        if reached.intersection(node.input):
            reached.update(o for o in node.output if o)
    return reached


def attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def node_label(node: onnx.NodeProto) -> str:
    """How errors name a node: its op and its name (or first output)."""
    return f"{node.op_type} node {node.name or node.output[0]!r}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unique_name(graph: onnx.GraphProto, stem: str) -> str:
    """A tensor or node name not used anywhere in `graph`, derived from `stem`."""
    taken = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    taken |= {t.name for t in graph.initializer}
    for node in graph.node:
        taken.update(node.input)
        taken.update(node.output)
        taken.add(node.name)
    name, i = stem, 0
    while name in taken:
        i += 1
        name = f"{stem}_{i}"
    return name


def remove_dead_nodes(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers that no graph output needs."""
    needed = {o.name for o in graph.output} | _subgraph_references(graph)
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    used = needed | {i.name for i in graph.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)


def _subgraph_references(graph: onnx.GraphProto) -> set[str]:
    """Names read inside If/Loop/Scan bodies (they may reach outer tensors)."""
    names: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            for body in [attr.g] if attr.HasField("g") else list(attr.graphs):
                for inner in body.node:
                    names.update(inner.input)
                names |= _subgraph_references(body)
    return names


SKELETON_LIMIT = 4096  # elements: bigger initializers are weights, not shape constants
Weights = dict[str, onnx.TensorProto]


def _is_weight(tensor: onnx.TensorProto) -> bool:
    count = 1
    for d in tensor.dims:
        count *= d
    return count > SKELETON_LIMIT


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its big initializers turned into typed inputs, for fast inference and checks.

    Shape inference and the checker serialise the whole model; a 500 MB VGG costs seconds per
    call for numbers they never read. Small initializers (shape constants) are kept.
    """
    fed = {i.name for i in model.graph.input}
    big = [t for t in model.graph.initializer if _is_weight(t)]
    inputs = [
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in big
        if t.name not in fed
    ]
    small = [t for t in model.graph.initializer if not _is_weight(t)]
    return _rebuilt(model, small, inputs)


def hollow(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Weights]:
    """The model with the data of its big initializers set aside (names, dims and types kept).

    Graph passes copy the model; on the hollow one a copy costs microseconds, not seconds.
    `with_weights` puts the data back for onnxruntime.
    """
    weights = {t.name: t for t in model.graph.initializer if _is_weight(t)}
    shells = [
        onnx.TensorProto(name=t.name, dims=t.dims, data_type=t.data_type)
        if t.name in weights
        else t
        for t in model.graph.initializer
    ]
    return _rebuilt(model, shells), weights


def with_weights(model: onnx.ModelProto, weights: Weights) -> onnx.ModelProto:
    """A hollow model with the set-aside data of its (remaining) initializers put back."""
    return _rebuilt(model, [weights.get(t.name, t) for t in model.graph.initializer])


def _rebuilt(
    model: onnx.ModelProto,
    initializers: list[onnx.TensorProto],
    extra_inputs: list[onnx.ValueInfoProto] = (),
) -> onnx.ModelProto:
    """A new model with the graph of `model` but the given initializers (and extra inputs)."""
    copy = onnx.ModelProto(
        ir_version=max(model.ir_version, 4),
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        domain=model.domain,
        model_version=model.model_version,
        doc_string=model.doc_string,
    )
    copy.opset_import.extend(model.opset_import)
    copy.metadata_props.extend(model.metadata_props)
    copy.functions.extend(model.functions)
    source, graph = model.graph, copy.graph
    graph.name, graph.doc_string = source.name, source.doc_string
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.input.extend(extra_inputs)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    graph.initializer.extend(initializers)
    graph.sparse_initializer.extend(source.sparse_initializer)
    return copy
