"""Time one forward+backward input-gradient step: onnxaudit (plain onnxruntime) vs torch autograd.

Both run the same weights at the same thread count in one process: torch executes the ONNX graph
through `TorchMirror`, a node-by-node torch interpreter for the ops the zoo uses, so the
comparison needs no separate torch definition of each model.

    python bench/gradients.py [MODEL.onnx ...] [--batch 64] [--threads 2] [--repeats 20]
    python bench/gradients.py --maxpool   # MaxPool backward: onnxaudit's rule vs Indices+Scatter
    python bench/gradients.py --arch resnet18 --arch vit_b_16 --batch 8 --threads 1
    python bench/gradients.py --pgd --arch resnet18 --images 32 --steps 5 --threads 1
    python bench/gradients.py --pgd --images 256 --threads 1    # the zoo vgg and resnet

`--pgd` times whole processes, one after the other and alternating: `robustness()` through the
ONNX gradient (load, graph rewrite, session, clean pass, PGD, robust pass) against the same PGD
written in torch autograd (load, the same passes), each in a fresh interpreter; wall time from
process start to exit and peak RSS.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from onnxaudit.features.gradients import (
    CrossEntropy,
    InputGradient,
    VectorJacobian,
    build_gradient_model,
)
from onnxaudit.features.runtime import create_session

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from torch_oracle import TorchMirror, torch_input_gradient  # noqa: E402  (the tests' oracle)

DEFAULT_MODELS = ["models/zoo/vgg.onnx", "models/zoo/resnet.onnx"]
ROOT = Path(__file__).resolve().parents[1]


def _best_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Fastest of `repeats` runs of each function, interleaved so load spikes hit all alike."""
    best = dict.fromkeys(fns, np.inf)
    for _ in range(repeats + 1):  # the first round warms up and counts too (min is robust)
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: 1000 * t for name, t in best.items()}


def bench(path: str, batch: int, threads: int, repeats: int) -> dict:
    model = onnx.load(path)
    rng = np.random.default_rng(0)
    dims = [d.dim_value or batch for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = rng.uniform(size=dims).astype(np.float32)
    y = rng.integers(0, 10, size=batch).astype(np.int64)
    grad = InputGradient(model, CrossEntropy(), device="cpu", threads=threads, batch_size=batch)
    torch.set_num_threads(threads)
    mirror = TorchMirror(model).eval()
    ours = grad(x, y)
    _, reference = torch_input_gradient(mirror, x, y)
    # per sample, on the batch's gradient scale: a float32 flip at a ReLU kink stays in its sample
    errors = np.abs(ours.input_grad - reference).max((1, 2, 3)) / np.abs(reference).max()
    times = _best_ms(
        {"onnx": lambda: grad(x, y), "torch": lambda: torch_input_gradient(mirror, x, y)}, repeats
    )
    return _row(path, batch, threads, times, errors)


def _archs():
    spec = importlib.util.spec_from_file_location("archs", ROOT / "tests" / "archs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_arch(name: str, batch: int, threads: int, repeats: int) -> dict:
    """A tests/archs.py architecture at 224x224 (torchscript export, opset 17) against torch
    autograd on the module itself, float32, same weights."""
    archs = _archs()
    torch.set_num_threads(threads)
    module = archs.randomised(archs.ARCHITECTURES[name]())
    with tempfile.TemporaryDirectory() as tmp:
        path = archs.export(module, Path(tmp) / f"{name}.onnx", "torchscript", 17, (3, 224, 224))
        model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch, 3, 224, 224)).astype(np.float32)
    y = rng.integers(0, 1000, size=batch).astype(np.int64)
    grad = InputGradient(model, CrossEntropy(), device="cpu", threads=threads, batch_size=batch)
    ours = grad(x, y)
    _, reference = torch_input_gradient(module, x, y)
    flat = (ours.input_grad - reference).reshape(batch, -1)
    errors = np.linalg.norm(flat, axis=1) / np.linalg.norm(reference.reshape(batch, -1), axis=1)
    times = _best_ms(
        {"onnx": lambda: grad(x, y), "torch": lambda: torch_input_gradient(module, x, y)}, repeats
    )
    return _row(name, batch, threads, times, errors)


def _row(model: str, batch: int, threads: int, times: dict, errors: np.ndarray) -> dict:
    return {
        "model": model,
        "batch": batch,
        "threads": threads,
        "onnx_ms": times["onnx"],
        "torch_ms": times["torch"],
        "ratio": times["onnx"] / times["torch"],
        "median_rel_error": float(np.median(errors)),
        "samples_off": int((errors > 1e-4).sum()),
    }


def _pool_models(kernel: int, stride: int, pad: int, shape: tuple) -> dict[str, onnx.ModelProto]:
    """x -> MaxPool -> Flatten, its onnxaudit gradient model, and the Indices+ScatterElements one."""
    geometry = dict(kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=[pad] * 4)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape[1:]])
    flat = helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)
    forward = helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["y"], **geometry), helper.make_node("Flatten", ["y"], ["logits"])],
        "pool", [x_info], [flat],
    )  # fmt: skip
    scatter = helper.make_graph(
        [
            helper.make_node("MaxPool", ["x"], ["y", "idx"], **geometry),
            helper.make_node("Flatten", ["y"], ["logits"]),
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
            *[helper.make_node("Reshape", [a, "flat"], [b]) for a, b in
              [("zeros", "z"), ("idx", "i"), ("grad_logits", "g")]],
            helper.make_node("ScatterElements", ["z", "i", "g"], ["added"], reduction="add"),
            helper.make_node("Reshape", ["added", "shape"], ["input_grad"]),
        ],
        "scatter",
        [x_info, helper.make_tensor_value_info("grad_logits", TensorProto.FLOAT, ["N", None])],
        [helper.make_tensor_value_info("input_grad", TensorProto.FLOAT, None), flat],
        [numpy_helper.from_array(np.asarray([-1], dtype=np.int64), "flat")],
    )  # fmt: skip
    models = {}
    for name, graph in (("forward", forward), ("scatter", scatter)):
        models[name] = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        models[name].ir_version = 8
    models["onnxaudit"] = build_gradient_model(models["forward"], VectorJacobian())
    return models


def maxpool_study(threads: int, repeats: int) -> None:
    shape = (64, 32, 28, 28)
    x = np.random.default_rng(0).uniform(size=shape).astype(np.float32)
    print(
        "| MaxPool (64x32x28x28) | forward ms | onnxaudit fwd+bwd ms | Indices+Scatter fwd+bwd ms |"
    )
    print("|---|---|---|---|")
    for kernel, stride, pad in ((2, 2, 0), (3, 2, 1)):
        models = _pool_models(kernel, stride, pad, shape)
        sessions = {name: create_session(m, "cpu", threads) for name, m in models.items()}
        out = (shape[2] + 2 * pad - kernel) // stride + 1
        v = (
            np.random.default_rng(1)
            .normal(size=(shape[0], shape[1] * out * out))
            .astype(np.float32)
        )
        feeds = {"x": x, "grad_logits": v}
        grads = [sessions[n].run(["input_grad"], feeds)[0] for n in ("onnxaudit", "scatter")]
        # same cells; overlapping windows add their shares in another order (rounding only)
        np.testing.assert_allclose(*grads, rtol=0, atol=1e-6 * np.abs(grads[1]).max())
        runs = {name: partial(sessions[name].run, None, feeds) for name in ("onnxaudit", "scatter")}
        runs["forward"] = partial(sessions["forward"].run, None, {"x": x})
        times = _best_ms(runs, repeats)
        print(
            f"| k{kernel} s{stride} p{pad} | {times['forward']:.1f} | {times['onnxaudit']:.1f} | "
            f"{times['scatter']:.1f} |"
        )


PGD_ONNX = """
import sys, time, numpy as np, onnx
from onnxaudit.analyses.robustness import robustness
path, n, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model = onnx.load(path)
shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
rng = np.random.default_rng(0)
x = rng.uniform(size=(n, *shape)).astype(np.float32)
y = rng.integers(0, 10, size=n)
r = robustness(model, x, y, eps=0.03, steps=steps, seed=0, device="cpu", threads=threads)
print(r.clean_accuracy, r.robust_accuracy)
import resource
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
PGD_TORCH = """
import sys, numpy as np, onnx, torch
sys.path.insert(0, {tests!r})
from torch_oracle import TorchMirror
path, n, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
model = onnx.load(path)
net = TorchMirror(model).eval()
shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.uniform(size=(n, *shape)).astype(np.float32))
y = torch.from_numpy(rng.integers(0, 10, size=n))
eps, step, batch = 0.03, 2.5 * 0.03 / steps, {batch}
def correct(images):
    with torch.no_grad():
        return torch.cat([net(images[i:i + batch]).flatten(1).argmax(1) == y[i:i + batch]
                          for i in range(0, n, batch)])
clean = correct(x)
noise = torch.from_numpy(rng.uniform(-eps, eps, size=x.shape).astype(np.float32))
adv = (x + noise).clamp(0, 1)
for i in range(0, n, batch):
    xb, yb = x[i:i + batch], y[i:i + batch]
    a = adv[i:i + batch]
    for _ in range(steps):
        a = a.detach().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(net(a).flatten(1), yb, reduction="sum")
        (g,) = torch.autograd.grad(loss, a)
        a = torch.min(torch.max(a.detach() + step * g.sign(), xb - eps), xb + eps).clamp(0, 1)
    adv[i:i + batch] = a.detach()
print(float(clean.float().mean()), float(correct(adv).float().mean()))
import resource
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _process(script: str, args: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds of one fresh interpreter running `script`, and its peak RSS in GB (the
    script prints it last, in KiB)."""
    import subprocess

    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, *args], check=True, env=env,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    return wall, int(done.stdout.split()[-1]) / 2**20


def pgd_study(paths: list[str], images: int, steps: int, threads: int, repeats: int) -> None:
    """Whole-process PGD: onnxaudit's robustness() vs torch autograd on the same weights."""
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(
        "| model | images | steps | threads | onnxaudit s | torch s | ratio | "
        "peak RSS onnxaudit / torch GB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for path in paths:
        args = [path, str(images), str(steps), str(threads)]
        torch_script = PGD_TORCH.format(tests=str(ROOT / "tests"), batch=128)
        best = {"onnx": np.inf, "torch": np.inf}
        rss = {"onnx": 0.0, "torch": 0.0}
        for _ in range(repeats):
            for side, script in (("onnx", PGD_ONNX), ("torch", torch_script)):
                wall, peak = _process(script, args, env)
                best[side], rss[side] = min(best[side], wall), max(rss[side], peak)
        print(
            f"| {Path(path).name} | {images} | {steps} | {threads} | {best['onnx']:.1f} | "
            f"{best['torch']:.1f} | {best['onnx'] / best['torch']:.2f}x | "
            f"{rss['onnx']:.2f} / {rss['torch']:.2f} |"
        )


def _exported(names: list[str], folder: Path) -> list[str]:
    """tests/archs.py architectures exported at 224x224 (torchscript, opset 17), seeded."""
    archs = _archs()
    paths = []
    for name in names:
        module = archs.randomised(archs.ARCHITECTURES[name]())
        paths.append(str(archs.export(module, folder / f"{name}.onnx", "torchscript", 17,
                                      (3, 224, 224))))  # fmt: skip
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--maxpool", action="store_true", help="Only the MaxPool study.")
    parser.add_argument(
        "--arch", action="append", default=[], help="tests/archs.py architecture (repeatable)."
    )
    parser.add_argument("--pgd", action="store_true", help="Whole-process PGD comparison.")
    parser.add_argument("--images", type=int, default=256, help="--pgd: images attacked.")
    parser.add_argument("--steps", type=int, default=10, help="--pgd: PGD steps.")
    args = parser.parse_args()
    if args.pgd:
        with tempfile.TemporaryDirectory() as tmp:
            paths = _exported(args.arch, Path(tmp)) if args.arch else args.models
            pgd_study(paths, args.images, args.steps, args.threads, max(1, args.repeats // 10))
        return
    if args.maxpool:
        maxpool_study(args.threads, args.repeats)
        return
    print(
        "| model | batch | threads | onnxaudit ms | torch ms | ratio | "
        "median rel. error | samples > 1e-4 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    runs = [partial(bench_arch, name) for name in args.arch]
    runs += [partial(bench, path) for path in (args.models if not args.arch else [])]
    for run in runs:
        r = run(args.batch, args.threads, args.repeats)
        print(
            f"| {Path(r['model']).name} | {r['batch']} | {r['threads']} | {r['onnx_ms']:.1f} | "
            f"{r['torch_ms']:.1f} | {r['ratio']:.2f}x | {r['median_rel_error']:.1e} | "
            f"{r['samples_off']} |"
        )


if __name__ == "__main__":
    main()
