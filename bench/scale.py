"""Benchmark: the all-class pattern search and audit-many, in-process vs a local Dask cluster.

    python bench/scale.py [--model models/zoo/vgg.onnx] [--per-class 10] [--epochs 8]
                          [--workers 2] [--many-per-class 10] [--no-many] [--out FILE]

1. The all-class pattern search of `--model` (3 canvases, batches of 4, `--epochs` passes) on
   `--per-class` search images per class: in-process with onnxruntime's default threads, then
   in class shards on `--workers` single-threaded worker processes (cluster start timed apart;
   session builds and data transfer count). The two searches must agree bit for bit.
2. `audit-many` of every model of the zoo (`run_audits`), in-process vs on the same cluster.
3. Per-image costs (one input gradient, one forward) measured on the search's own calls, and
   the projection they give for a 1000-class 224x224 model on 1, 8 and 64 workers.

`uptime` is recorded before and after: on a shared machine the figures are under that load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from onnxaudit import executors
from onnxaudit.analyses.patterns.evaluate import K_GRID
from onnxaudit.analyses.patterns.shards import sharded_search
from onnxaudit.data import load_dataset
from onnxaudit.executors import IN_PROCESS, DaskExecutor
from onnxaudit.features.runtime import create_session
from onnxaudit.model import prepare_model
from onnxaudit.pipeline import prepare_inputs, run_audits
from onnxaudit.results.schema import dumps
from onnxaudit.seeds import purpose
from onnxaudit.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "models" / "data" / "fashion-mnist-test-subset.npz"
CANVASES = ("confident", "white", "free")
BATCH = 4


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def search(model: bytes, x, y, epochs: float, executor, threads: int | None = None) -> object:
    options = {"k": 0.05, "batch_per_class": BATCH, "epochs": epochs, "canvas": CANVASES}
    return sharded_search(model, x, y, None, options, 0, "cpu", threads, executor)


def forward_cost(pm, x: np.ndarray, repeats: int = 5) -> float:
    """Seconds per image of one forward pass (batches of 512, onnxruntime default threads)."""
    session = create_session(pm.proto, device="cpu")
    feed = {pm.info.input_name: np.ascontiguousarray(np.resize(x, (512, *x.shape[1:])))}
    best = min(timed(session.run, None, feed)[1] for _ in range(repeats))
    return best / 512


def project(grad_s: float, fwd_s: float, speedup: float, workers_measured: int) -> list[dict]:
    """Hours for a 1000-class 224x224 model: search images 10 per class (5 epochs of batches of
    4 over the other classes' 9,990, 3 canvases), evaluation on 10 held-out images per class.

    Per-image costs are scaled from the measured 28x28 model by the pixel ratio (224/28)^2 = 64
    (same architecture, cost proportional to positions). The search and the evaluation
    (predictive power at k and over the k grid) are both sharded by class, so both divide by the
    workers at the parallel efficiency measured here.
    """
    scale = (224 / 28) ** 2
    classes, per_class = 1000, 10
    steps = 5 * ((classes - 1) * per_class // BATCH)
    search_images = classes * steps * len(CANVASES) * BATCH
    eval_images = classes * len(CANVASES) * (classes - 1) * per_class * (1 + len(K_GRID))
    efficiency = min(1.0, speedup / workers_measured)  # never project more than linear
    rows = []
    for n in (1, 8, 64):
        share = n * (efficiency if n > 1 else 1.0)
        search_h = search_images * grad_s * scale / share / 3600
        eval_h = eval_images * fwd_s * scale / share / 3600
        rows.append({
            "workers": n,
            "search_hours": round(search_h, 1),
            "eval_hours": round(eval_h, 1),
            "total_hours": round(search_h + eval_h, 1),
            "total_days": round((search_h + eval_h) / 24, 1),
        })  # fmt: skip
    return rows


def audit_many_times(cluster: DaskExecutor, per_class: int) -> dict:
    settings = Settings(per_class=per_class, device="cpu", patterns_epochs=2)
    models = sorted((REPO / "models" / "zoo").glob("*.onnx"))
    dataset = load_dataset(DATA)
    inputs = [prepare_inputs(path, dataset, settings) for path in models]
    alone, t_alone = timed(run_audits, inputs, [settings] * len(inputs))
    with executors.using(cluster):
        spread, t_spread = timed(run_audits, inputs, [settings] * len(inputs))
    same = [dumps(a.to_dict()) == dumps(b.to_dict()) for a, b in zip(alone, spread, strict=True)]
    return {
        "models": [p.stem for p in models],
        "per_class": per_class,
        "in_process_s": round(t_alone, 1),
        "workers_s": round(t_spread, 1),
        "ratio": round(t_spread / t_alone, 2),
        "identical_results": all(same),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "zoo" / "vgg.onnx")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--many-per-class", type=int, default=10)
    parser.add_argument("--no-many", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    report: dict = {"uptime_before": uptime()}
    pm = prepare_model(args.model)
    data = load_dataset(DATA).subset(args.per_class, purpose(0, "subset"))
    x = data.images(pm.info.input_shape)
    y = np.asarray(data.labels, dtype=np.int64)
    model = pm.proto.SerializeToString()

    alone, t_alone = timed(search, model, x, y, args.epochs, IN_PROCESS)
    # one thread in-process: how much onnxruntime's own threads already gain (the bound of
    # what N single-threaded workers can add: ratio >= that gain / N)
    _, t_one = timed(search, model, x, y, args.epochs, IN_PROCESS, 1)
    t_start = time.perf_counter()
    with executors.dask_client(args.workers, None) as client:
        client.wait_for_workers(args.workers)
        report["cluster_start_s"] = round(time.perf_counter() - t_start, 1)
        cluster = DaskExecutor(client)
        spread, t_spread = timed(search, model, x, y, args.epochs, cluster)
        identical = all(
            np.array_equal(getattr(alone, name), getattr(spread, name))
            for name in ("masks_", "pressure_", "canvases_", "binary_masks_")
        )
        units = alone.n_steps_ * len(CANVASES) * len(alone.classes_) * BATCH + len(x)
        grad_s = t_alone / units
        report["search"] = {
            "model": args.model.name,
            "classes": len(alone.classes_),
            "search_images": len(x),
            "steps": alone.n_steps_,
            "image_gradients": units,
            "in_process_s": round(t_alone, 1),
            "in_process_1_thread_s": round(t_one, 1),
            "workers": args.workers,
            "workers_s": round(t_spread, 1),
            "ratio": round(t_spread / t_alone, 2),
            "identical": identical,
        }
        report["per_image"] = {"gradient_ms": grad_s * 1e3, "forward_ms": forward_cost(pm, x) * 1e3}
        if not args.no_many:
            report["audit_many"] = audit_many_times(cluster, args.many_per_class)
    speedup = t_alone / t_spread
    report["projection_1000_classes_224"] = project(
        grad_s, report["per_image"]["forward_ms"] / 1e3, speedup, args.workers
    )
    report["uptime_after"] = uptime()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
