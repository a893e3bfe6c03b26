"""The graph pass: forward ONNX classifier -> ONNX model that also computes d loss / d input.

Reverse-mode over the topologically sorted forward nodes, one rule per op (`rules.RULES`). Only
nodes on a path from the image input to the logits through float tensors are differentiated:
weights, Shape/Constant-driven subgraphs and integer/bool tensors carry no gradient.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, version_converter

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import FLOAT_TYPES, GradContext, describe_node
from onnxaudit.features.gradients.objectives import CrossEntropy, Objective
from onnxaudit.features.gradients.rules import RULES
from onnxaudit.features.gradients.shapes import computed_constants, inferred, with_probed_shapes
from onnxaudit.model.graph import unique_name

# Rules emit ops in the model's own opset from 9 on (Sign, ConstantOfShape, Where...); older
# models are converted to it first.
MIN_OPSET = 9
# integer operands the rules read as constants: when an exporter computes them from shapes, they
# are evaluated once (see _fold_computed_operands)
_REDUCE_AXES = dict.fromkeys(
    ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2"), (1,)
)
OUTPUTS = ("loss", "logits", "input_grad")  # the gradient graph's fixed output names
CONSTANT_OPERANDS = {
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 3),
    "Tile": (1,),
    "Gather": (1,),
    "GatherElements": (1,),
    "Resize": (3,),
    **_REDUCE_AXES,
    "ReduceSumSquare": (1,),
    "ReduceLogSumExp": (1,),
}


def build_gradient_model(
    model: onnx.ModelProto,
    objective: Objective | None = None,
    wrt_tensors: Sequence[str] = (),
) -> onnx.ModelProto:
    """Return a model with outputs `loss`, `logits`, `input_grad` and `grad:<name>` per wrt tensor.

    Inputs: the model's own input(s) (dynamic batch kept) plus the objective's input (`labels`
    or `grad_logits`). The first non-initializer input is the one differentiated; the first
    output holds the logits, looking through a trailing Softmax/LogSoftmax (CE on probabilities
    would be a different, saturating objective). Raises AuditError for an op without a rule
    before emitting anything.
    """
    objective = objective or CrossEntropy()
    model = _normalised(model)
    renamed = _free_names(model, (*OUTPUTS, objective.input_name))
    wrt = {name: renamed.get(name, name) for name in wrt_tensors}
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    image = next(i.name for i in graph.input if i.name not in initializers)
    logits = _logits(graph)
    ctx = GradContext(model)
    ctx.varied = varied = _varied(graph, image, ctx.types)
    needed = _needed(graph, logits)
    active = [n for n in graph.node if any(o in needed and o in varied for o in n.output)]
    _check_rules(active, varied)  # before anything costly: unsupported ops fail fast
    _check_path(image, logits, list(wrt.values()), varied & needed)
    probed = with_probed_shapes(model).graph
    ctx.dims.update(GradContext.dims_of(probed))
    ctx.types.update({v.name: v.type.tensor_type.elem_type for v in probed.value_info})
    _fold_computed_operands(model, ctx, active)

    scores = _as_matrix(ctx, logits)
    loss, seed = objective.emit(ctx, scores)
    seed = seed if scores == logits else ctx.reshape_like(seed, logits)
    total = _backward(ctx, active, logits, seed)
    input_grad = total(image)
    if input_grad is None:  # every path runs through piecewise-constant ops (Floor, Sign...)
        zero = onnx.numpy_helper.from_array(np.zeros(1, ctx.np_dtype(image)))
        input_grad = ctx.op("ConstantOfShape", [ctx.shape_of(image)], value=zero)
    outputs = {"loss": loss, "logits": scores, "input_grad": input_grad}
    mirrors = {"loss": scores, "logits": scores, "input_grad": image}
    for name, tensor in wrt.items():  # under the caller's name, even where the model's was freed
        outputs[f"grad:{name}"], mirrors[f"grad:{name}"] = total(tensor), tensor
    loss_dims = (None,) if objective.reduction == "none" else ()
    return _assemble(model, ctx, outputs, mirrors, loss_dims)


def _backward(
    ctx: GradContext, active: list[onnx.NodeProto], logits: str, seed: str
) -> Callable[[str], str | None]:
    """Walk the active nodes in reverse, emitting each rule; returns the gradient lookup (a
    tensor feeding several consumers gets the Sum of their contributions)."""
    grads: dict[str, list[str]] = defaultdict(list)
    grads[logits].append(seed)
    totals: dict[str, str] = {}

    def total(name: str) -> str | None:
        parts = grads.get(name)
        if not parts:
            return None
        if name not in totals:
            totals[name] = parts[0] if len(parts) == 1 else ctx.op("Sum", parts)
        return totals[name]

    for node in reversed(active):
        output_grads = [total(o) if o in ctx.varied else None for o in node.output]
        if all(g is None for g in output_grads):
            continue
        input_grads = RULES[node.op_type].fn(ctx, node, output_grads)
        for name, grad in zip(node.input, input_grads, strict=False):
            if grad is not None and name in ctx.varied:
                grads[name].append(grad)
    return total


def _as_matrix(ctx: GradContext, logits: str) -> str:
    """Logits as (N, K): classifiers ending in a 1x1 conv output (N, K, 1, 1)."""
    dims = ctx.dims.get(logits)
    if dims is None or len(dims) == 2:
        return logits
    flat = ctx.op("Flatten", [logits], axis=1)
    rest = dims[1:]
    ctx.dims[flat] = (dims[0], None if None in rest else int(np.prod(rest)))
    return flat


def _free_names(model: onnx.ModelProto, reserved: Sequence[str]) -> dict[str, str]:
    """Rename the model's own tensors that carry a name the gradient graph's outputs or objective
    input take (exported graphs often have a tensor called 'logits'); returns old -> new.

    The image input keeps its name (it is what callers feed)."""
    graph = model.graph
    used = {name for node in graph.node for name in [*node.input, *node.output]}
    used |= {t.name for t in [*graph.output, *graph.initializer]}
    image = {i.name for i in graph.input}
    renamed = {
        name: unique_name(graph, f"{name}/model")
        for name in reserved
        if name in used and name not in image
    }
    if renamed:
        for node in graph.node:
            node.input[:] = [renamed.get(n, n) for n in node.input]
            node.output[:] = [renamed.get(n, n) for n in node.output]
        for info in [*graph.output, *graph.value_info, *graph.initializer]:
            info.name = renamed.get(info.name, info.name)
    return renamed


def _normalised(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy at opset >= MIN_OPSET with resolved shapes (rules need static spatial dims)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if opset < MIN_OPSET:
        try:
            copy = version_converter.convert_version(copy, MIN_OPSET)
        except Exception as exc:
            raise AuditError(f"cannot convert opset {opset} model to {MIN_OPSET}: {exc}") from exc
    return inferred(copy)


def _logits(graph: onnx.GraphProto) -> str:
    """The logits tensor; a trailing Softmax/LogSoftmax (feeding nothing else) is dropped."""
    output = graph.output[0].name
    producer = next((n for n in graph.node if output in n.output), None)
    consumed = any(output in n.input for n in graph.node)
    if producer is None or producer.op_type not in ("Softmax", "LogSoftmax") or consumed:
        return output
    graph.node.remove(producer)
    graph.output[0].name = producer.input[0]
    return producer.input[0]


def _varied(graph: onnx.GraphProto, image: str, types: dict[str, int]) -> set[str]:
    """Float tensors that depend on the image through float tensors."""
    varied = {image}
    for node in graph.node:
        if set(node.input) & varied:
            varied |= {o for o in node.output if o and types.get(o, 1) in FLOAT_TYPES}
    return varied


def _needed(graph: onnx.GraphProto, logits: str) -> set[str]:
    """Tensors the logits depend on."""
    needed = {logits}
    for node in reversed(graph.node):
        if set(node.output) & needed:
            needed |= set(node.input)
    return needed


def _check_path(image: str, logits: str, wrt_tensors: Sequence[str], on_path: set[str]) -> None:
    if logits not in on_path:
        raise AuditError(f"output {logits!r} does not depend on input {image!r}")
    for name in wrt_tensors:
        if name not in on_path:
            raise AuditError(f"tensor {name!r} is not on the path from {image!r} to {logits!r}")


def _fold_computed_operands(
    model: onnx.ModelProto, ctx: GradContext, active: list[onnx.NodeProto]
) -> None:
    """Integer operands of differentiated nodes that are computed (not constants) but
    batch-independent become known constants, as rules read them (Slice starts, Pad pads)."""
    names = sorted(
        {
            name
            for node in active
            for position, name in enumerate(node.input)
            if position in CONSTANT_OPERANDS.get(node.op_type, ())
            and name not in ctx.varied
            and ctx.value(name) is None
            and ctx.elem_type(name) in (TensorProto.INT64, TensorProto.INT32)
        }
    )
    ctx.constants.update(computed_constants(model, names, {n: ctx.elem_type(n) for n in names}))


def _check_rules(active: list[onnx.NodeProto], varied: set[str]) -> None:
    for node in active:
        backward = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if backward is None:
            domain = f"{node.domain}::" if node.domain else ""
            raise AuditError(
                f"unsupported op {domain}{describe_node(node)}: no gradient rule "
                f"(supported: {', '.join(sorted(RULES))})"
            )
        for position, name in enumerate(node.input):
            if name in varied and not backward.differentiates(position):
                raise AuditError(
                    f"unsupported: gradient w.r.t. input {position} ({name!r}) of "
                    f"{describe_node(node)} (input-dependent weights)"
                )


def _assemble(
    model: onnx.ModelProto,
    ctx: GradContext,
    outputs: dict[str, str],
    mirrors: dict[str, str],
    loss_dims: tuple[int | None, ...],
) -> onnx.ModelProto:
    """Replace the outputs by the named results; each takes the type of the tensor it mirrors."""
    graph = model.graph
    renames, infos = [], []
    for name, tensor in outputs.items():
        if name != tensor:
            renames.append(
                helper.make_node("Identity", [tensor], [ctx.claim(name)], name=f"grad/out/{name}")
            )
        source = mirrors.get(name, name.removeprefix("grad:"))
        dims = loss_dims if name == "loss" else ctx.dims.get(source, ())
        batch = [d if d is not None else ("N" if i == 0 else None) for i, d in enumerate(dims)]
        infos.append(helper.make_tensor_value_info(name, ctx.elem_type(source), batch))
    graph.node.extend([*ctx.nodes, *renames])
    graph.initializer.extend(ctx.initializers)
    graph.input.extend(ctx.inputs)
    del graph.output[:]
    graph.output.extend(infos)
    del graph.value_info[:]  # stale after the rewrite; onnxruntime re-infers
    return model
