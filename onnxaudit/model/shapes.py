"""Resolve every tensor's shape before any pass needs it.

Static inference (with data propagation) is tried first; what it cannot reach, and any shape
arithmetic (`Shape` -> Gather/Concat -> Pad/Reshape/Resize), is resolved by running one probing
batch through onnxruntime. Shape arithmetic that gives the same values for batches of 1 and 2 is
folded into constants, so later passes (gradients, pooling) see plain constant pads and sizes.
A fixed batch is made symbolic when a probe shows that doing so changes no output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxaudit.errors import AuditError
from onnxaudit.model.graph import (
    Dim,
    Weights,
    constant_names,
    consumers,
    copy_model,
    dependents,
    dims,
    first_line,
    image_input,
    remove_dead_nodes,
    skeleton,
    unique_name,
    with_weights,
)

BATCH = "N"
SHAPE_SOURCES = {"Shape", "Size"}
RANDOM_OPS = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
}
FOLD_LIMIT = 1 << 16  # elements: shape arithmetic is small; big constant subgraphs stay as they are


@dataclass
class ShapeTable:
    """Resolved dims (batch as "N" when dynamic) and element types of the graph's tensors."""

    dims: dict[str, list[Dim]] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    batch: str = "dynamic"  # "dynamic", "made dynamic" or "fixed"
    fixed_batch: int | None = None

    def static(self, name: str) -> bool:
        shape = self.dims.get(name)
        return shape is not None and all(isinstance(d, int) for d in shape[1:])


def fix_input(
    model: onnx.ModelProto,
    layout: str,
    input_shape: tuple[int, int, int] | None,
    path: object = None,
) -> onnx.ModelProto:
    """Give the image input fixed channel and spatial sizes (from `input_shape` when given),
    and a batch written as -1 or 0 (Paddle's dynamic batch) the symbol N."""
    model = _negative_batch_as_symbol(model, path)
    image = image_input(model.graph, path)
    declared = dims(image)
    if declared is None or len(declared) != 4:
        raise AuditError(f"expected a 4-D image input, found shape {declared}", path)
    positions = (3, 1, 2) if layout == "NHWC" else (1, 2, 3)
    if input_shape is None:
        sizes = [declared[i] for i in positions]
        if not all(isinstance(d, int) and d > 0 for d in sizes):
            raise AuditError(
                f"the input's channel and spatial sizes are not fixed (found {declared}); "
                "give them with --input-shape C,H,W",
                path,
            )
        return model
    if [declared[i] for i in positions] == list(input_shape):
        return model
    model = copy_model(model)
    image = image_input(model.graph, path)
    for position, size in zip(positions, input_shape, strict=True):
        image.type.tensor_type.shape.dim[position].Clear()
        image.type.tensor_type.shape.dim[position].dim_value = size
    _forget_shapes(model)
    return model


def _negative_batch_as_symbol(model: onnx.ModelProto, path: object) -> onnx.ModelProto:
    shape = image_input(model.graph, path).type.tensor_type.shape
    if not shape.dim or not shape.dim[0].HasField("dim_value") or shape.dim[0].dim_value > 0:
        return model
    model = copy_model(model)
    batch = image_input(model.graph, path).type.tensor_type.shape.dim[0]
    batch.Clear()
    batch.dim_param = BATCH
    return model


def resolve_shapes(
    model: onnx.ModelProto, weights: Weights | None = None, path: object = None
) -> tuple[onnx.ModelProto, ShapeTable]:
    """The model (batch made symbolic when safe, shape arithmetic folded) and every tensor's shape.

    `model` may be hollow (see `graph.hollow`); `weights` are then its set-aside data, which
    the probes need.
    """
    image = image_input(model.graph, path)
    batch = dims(image)[0]
    if isinstance(batch, int) and batch > 0:  # Paddle writes -1 for a dynamic batch
        return _resolve_fixed_batch(model, batch, weights or {}, path)
    table = _inferred(model, path)
    if not _needs_probe(model, table):
        return model, table
    runs = _probe(model, (1, 2), weights or {}, path)
    model = _fold_shape_arithmetic(model, runs)
    table = _table_from_runs(runs)
    return _annotated(model, table), table


def _resolve_fixed_batch(
    model: onnx.ModelProto, batch: int, weights: Weights, path: object
) -> tuple[onnx.ModelProto, ShapeTable]:
    candidate = _symbolic_batch(model, batch)
    try:
        runs = _probe(candidate, (1, 2), weights, path)
        safe = _same_outputs(candidate, runs)
    except AuditError:
        safe = False
    if safe:
        model = _fold_shape_arithmetic(candidate, runs)
        table = _table_from_runs(runs)
        table.batch = "made dynamic"
        return _annotated(model, table), table
    runs = _probe(model, (batch,), weights, path)
    model = _fold_shape_arithmetic(model, runs)
    table = _table_from_runs(runs)
    table.batch, table.fixed_batch = "fixed", batch
    return _annotated(model, table), table


def _symbolic_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """The batch dim made symbolic; Reshapes to a constant shape starting with `batch` copy it."""
    model = copy_model(model)
    graph = model.graph
    image = image_input(graph)
    image.type.tensor_type.shape.dim[0].Clear()
    image.type.tensor_type.shape.dim[0].dim_param = BATCH
    _forget_shapes(model, outputs=True)
    varied = dependents(graph, image.name)
    initializers = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[0] not in varied:
            continue
        target = initializers.get(node.input[1])
        if target is None:
            continue
        values = numpy_helper.to_array(target)
        if values.ndim == 1 and len(values) >= 2 and values[0] == batch:
            copied = values.copy()
            copied[0] = 0
            name = unique_name(graph, f"{node.input[1]}::batch")
            graph.initializer.append(numpy_helper.from_array(copied, name))
            node.input[1] = name
    return model


def _same_outputs(model: onnx.ModelProto, runs: list[dict]) -> bool:
    """The first image of a batch of two gets what it gets alone (a batch-mixing graph fails)."""
    for out in model.graph.output:
        alone, pair = runs[0].get(out.name), runs[1].get(out.name)
        if alone is None or pair is None or alone.shape[:1] != (1,) or pair.shape[:1] != (2,):
            return False
        if alone.shape[1:] != pair.shape[1:] or not np.allclose(
            alone, pair[:1], rtol=1e-4, atol=1e-5
        ):
            return False
    return True


def _forget_shapes(model: onnx.ModelProto, outputs: bool = False) -> None:
    """Drop recorded intermediate shapes (and output dims) that a changed input makes stale."""
    del model.graph.value_info[:]
    if outputs:
        for out in model.graph.output:
            out.type.tensor_type.ClearField("shape")


def _inferred(model: onnx.ModelProto, path: object) -> ShapeTable:
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton(model), data_prop=True)
    except Exception as exc:
        raise AuditError(f"shape inference failed: {first_line(exc)}", path) from exc
    graph = inferred.graph
    infos = (*graph.input, *graph.value_info, *graph.output)
    table = ShapeTable()
    for vi in infos:
        shape = dims(vi)
        if shape is not None:
            table.dims[vi.name] = shape
        table.types[vi.name] = vi.type.tensor_type.elem_type
    return table


def _needs_probe(model: onnx.ModelProto, table: ShapeTable) -> bool:
    for node in model.graph.node:
        if node.op_type in SHAPE_SOURCES:
            return True
        if any(out and not table.static(out) for out in node.output):
            return True
    return False


def _probe(
    model: onnx.ModelProto, batches: tuple[int, ...], weights: Weights, path: object
) -> list[dict[str, np.ndarray]]:
    """Every top-level tensor's value for seeded random batches of each size in `batches`."""
    from onnxaudit.features.runtime import create_session

    exposed = with_weights(model, weights)
    graph = exposed.graph
    image = image_input(graph, path)
    listed = {o.name for o in graph.output}
    names = [o for node in graph.node for o in node.output if o and o not in listed]
    graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    outputs = [o.name for o in graph.output]
    shape = [d for d in dims(image)]
    dtype = helper.tensor_dtype_to_np_dtype(image.type.tensor_type.elem_type)
    rng = np.random.default_rng(0)
    pixels = rng.random((max(batches), *[int(d) for d in shape[1:]]))
    pixels = (
        (pixels * 255).astype(dtype) if np.issubdtype(dtype, np.integer) else pixels.astype(dtype)
    )
    try:
        session = create_session(exposed, device="cpu", threads=1)
    except AuditError as exc:
        raise AuditError(f"cannot probe the tensor shapes: {exc.message}", path) from exc
    runs = []
    for batch in batches:
        x = pixels[:batch]
        try:
            values = session.run(outputs, {image.name: x})
        except Exception as exc:
            raise AuditError(
                f"cannot run the model on a probing batch of shape {list(x.shape)}: "
                f"{first_line(exc)}",
                path,
            ) from exc
        runs.append(dict(zip(outputs, values, strict=True)))
    return runs


def _table_from_runs(runs: list[dict[str, np.ndarray]]) -> ShapeTable:
    """Dims from the probes: the leading dim is the batch when it follows the batch size."""
    table = ShapeTable()
    for name, value in runs[-1].items():
        table.types[name] = helper.np_dtype_to_tensor_dtype(value.dtype)
        if len(runs) == 1:
            table.dims[name] = list(value.shape)
            continue
        one, two = runs[0][name].shape, value.shape
        if one == two:
            table.dims[name] = list(two)
        elif len(one) == len(two) and one[1:] == two[1:] and (one[0], two[0]) == (1, 2):
            table.dims[name] = [BATCH, *two[1:]]
    return table


def _fold_shape_arithmetic(model: onnx.ModelProto, runs: list[dict]) -> onnx.ModelProto:
    """Replace tensors computed only from shapes and constants by the constants they always equal."""
    model = copy_model(model)
    graph = model.graph
    folded: dict[str, str] = {}
    for name in _shape_frontier(graph):
        values = [run.get(name) for run in runs]
        if _constant_across(values):
            folded[name] = unique_name(graph, f"{name}::folded")
            graph.initializer.append(numpy_helper.from_array(values[0], folded[name]))
    if folded:
        for node in graph.node:
            node.input[:] = [folded.get(i, i) for i in node.input]
        remove_dead_nodes(graph)
    return model


def _shape_frontier(graph: onnx.GraphProto) -> list[str]:
    """Tensors computed from shapes and constants alone that feed a computation on data."""
    constants = constant_names(graph)
    shape_only = set(constants)
    for node in graph.node:
        data = [i for i in node.input if i]
        if node.op_type in SHAPE_SOURCES or (
            data and node.op_type not in RANDOM_OPS and all(i in shape_only for i in data)
        ):
            shape_only.update(o for o in node.output if o)
    users = consumers(graph)
    return [
        name
        for name in sorted(shape_only - constants)
        if any(o not in shape_only for user in users.get(name, ()) for o in user.output)
    ]


def _constant_across(values: list[np.ndarray | None]) -> bool:
    """The same small value in every probe (batch sizes 1 and 2)."""
    first = values[0]
    if first is None or first.size > FOLD_LIMIT:
        return False
    return all(
        v is not None and v.shape == first.shape and np.array_equal(v, first) for v in values
    )


def _annotated(model: onnx.ModelProto, table: ShapeTable) -> onnx.ModelProto:
    """Record the resolved shapes as value_info, so later inference and rewrites see them."""
    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    fed = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    del graph.value_info[:]
    for node in graph.node:
        for name in node.output:
            if not name or name in fed or name not in table.dims:
                continue
            info = helper.make_tensor_value_info(name, table.types[name], table.dims[name])
            if name in outputs:
                outputs[name].type.CopyFrom(info.type)
            else:
                graph.value_info.append(info)
    return model
