"""Static shapes for the rules: onnx shape inference, then onnxruntime probing for what it misses.

Rules need ranks and spatial dims. Symbolic inference fails on graphs that compute shapes at run
time (Paddle, tf2onnx); running the forward at two batch sizes reveals every intermediate's dims,
and a dim that changes with the batch is the dynamic one.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, shape_inference

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import FLOAT_TYPES
from onnxaudit.features.runtime import create_session

PROBE_BATCHES = (1, 2)


def resolved(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with value_info from inference, then probing for whatever inference missed."""
    return with_probed_shapes(inferred(model))


def inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with the value_info of onnx shape inference (symbolic data propagation)."""
    shapes = _inferred(model)
    del model.graph.value_info[:]
    model.graph.value_info.extend(shapes.graph.value_info)
    del model.graph.output[:]
    model.graph.output.extend(shapes.graph.output)
    return model


def with_probed_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with value_info for the intermediates inference left open, from forward runs
    (needs an onnxruntime session: done after the cheap checks)."""
    graph = model.graph
    known = {i.name: i.type.tensor_type for i in [*graph.input, *graph.value_info, *graph.output]}
    missing = _unresolved(graph, known)
    if not missing:
        return model
    try:
        probed = _probe(model, missing, {n: known[n].elem_type for n in missing if n in known})
    except AuditError:
        return model  # the rules that need these shapes will say so
    by_name = {v.name: v for v in graph.value_info}
    outputs = {o.name for o in graph.output}
    for name, (elem_type, dims) in probed.items():
        info = helper.make_tensor_value_info(name, elem_type, dims)
        if name in by_name:
            by_name[name].CopyFrom(info)
        elif name not in outputs:
            graph.value_info.append(info)
    return model


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx shape inference on a copy whose large weights are declared inputs: the same result
    without serialising hundreds of MB (7 s for VGG-19)."""
    light = onnx.ModelProto()
    light.CopyFrom(model)
    graph = light.graph
    large = [
        t for t in graph.initializer if t.data_type in FLOAT_TYPES and len(t.raw_data) > 1 << 16
    ]
    names = {t.name for t in large}
    kept = [t for t in graph.initializer if t.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    declared = {i.name for i in graph.input}
    graph.input.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in large
        if t.name not in declared
    )
    try:
        return shape_inference.infer_shapes(light, data_prop=True)
    except Exception as exc:
        raise AuditError(f"onnx shape inference failed: {str(exc).splitlines()[0]}") from exc


def _unresolved(graph: onnx.GraphProto, known: dict[str, onnx.TypeProto.Tensor]) -> list[str]:
    """Node outputs whose type or dims inference left open."""
    batch = _image(graph).type.tensor_type.shape.dim
    symbol = batch[0].dim_param if len(batch) else ""
    return [
        name
        for node in graph.node
        for name in node.output
        if name and (name not in known or _incomplete(known[name], symbol))
    ]


def _image(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    initializers = {t.name for t in graph.initializer}
    return next(i for i in graph.input if i.name not in initializers)


def _incomplete(tensor_type: onnx.TypeProto.Tensor, batch: str) -> bool:
    """No shape, or a dim that is neither a number nor the image's batch symbol."""
    if not tensor_type.HasField("shape"):
        return True
    return any(
        not d.HasField("dim_value") and not (batch and d.dim_param == batch)
        for d in tensor_type.shape.dim
    )


def _runs(model: onnx.ModelProto, names: list[str], types: dict[str, int]) -> list[list]:
    """The values of `names` in forward runs on random images, one list per probe batch size."""
    image = _image(model.graph)
    dims = [
        d.dim_value if d.HasField("dim_value") else None for d in image.type.tensor_type.shape.dim
    ]
    if None in dims[1:] or not dims:
        raise AuditError(
            f"cannot resolve {names[0]!r} and {len(names) - 1} more tensors: "
            "the image input needs static dims (only the batch may be dynamic)"
        )
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(
        helper.make_tensor_value_info(n, types[n], None)
        if types.get(n)
        else onnx.ValueInfoProto(name=n)
        for n in names
    )
    session = create_session(probe, "cpu")
    dtype = helper.tensor_dtype_to_np_dtype(image.type.tensor_type.elem_type)
    rng = np.random.default_rng(0)
    batches = PROBE_BATCHES if dims[0] is None else (dims[0],)
    runs = []
    for batch in batches:
        x = rng.uniform(size=(batch, *dims[1:])).astype(dtype)
        try:
            runs.append(session.run(names, {image.name: x}))
        except Exception as exc:  # onnxruntime's own error types; e.g. a batch-size-bound graph
            raise AuditError(f"probing the forward failed: {str(exc).splitlines()[0]}") from exc
    return runs


def _probe(
    model: onnx.ModelProto, names: list[str], types: dict[str, int]
) -> dict[str, tuple[int, list]]:
    """Element type and dims of `names` from forward runs: a dim that differs between batch
    sizes is None."""
    shapes = {}
    for name, *observed in zip(names, *_runs(model, names, types), strict=True):
        first = observed[0].shape
        varies = [len({a.shape[i] for a in observed}) > 1 for i in range(len(first))]
        dims = [None if v else int(d) for d, v in zip(first, varies, strict=True)]
        shapes[name] = (helper.np_dtype_to_tensor_dtype(observed[0].dtype), dims)
    return shapes


def computed_constants(
    model: onnx.ModelProto, names: list[str], types: dict[str, int]
) -> dict[str, np.ndarray]:
    """Integer tensors computed from shapes (exporters' Shape -> Div -> Slice chains) whose value
    is the same at every probed batch size: constants for the rules (Slice starts, Pad pads)."""
    if not names:
        return {}
    try:
        runs = _runs(model, names, types)
    except AuditError:
        return {}
    return {
        name: observed[0]
        for name, *observed in zip(names, *runs, strict=True)
        if all(a.shape == observed[0].shape and np.array_equal(a, observed[0]) for a in observed)
    }
