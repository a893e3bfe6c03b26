"""On a real LocalCluster of 2 single-threaded worker processes: the same result.json as
in-process for patterns, PGD, knowledge points and compare; features cut into data shards are
those of one pass; a killed worker is survived; a shard that keeps failing stops the run
naming it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, make_inputs
from typer.testing import CliRunner

from onnxaudit import executors
from onnxaudit.analyses.knowledge import KnowledgeSettings, analyse_knowledge, default_layers
from onnxaudit.cli.compare import compare as compare_cli
from onnxaudit.data import load_dataset
from onnxaudit.executors import DaskExecutor, ShardFailed, Task
from onnxaudit.features.extract import FeatureExtractor
from onnxaudit.model import prepare_model
from onnxaudit.pipeline import audit, compare

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parent.parent
STUDENT = ROOT / "models" / "zoo" / "vgg-student.onnx"
SUBSET = ROOT / "models" / "data" / "fashion-mnist-test-subset.npz"

EXECUTOR_FIELDS = ("workers", "scheduler")  # the only settings allowed to differ


@pytest.fixture(scope="module")
def cluster():
    with executors.dask_client(2, None) as client:
        yield DaskExecutor(client)


def _document(result) -> dict:
    doc = json.loads(json.dumps(result.to_dict(), default=str))
    for run in doc.get("models", [doc]):
        for name in EXECUTOR_FIELDS:
            run["settings"].pop(name)
    return doc


@pytest.mark.parametrize("only", ["patterns", "robustness"])
def test_same_result_json_in_process_and_on_two_workers(tmp_path, cluster, only):
    model, data = make_inputs(tmp_path, n=24)
    settings = {
        "seed": 3,
        "batch_size": 4,
        "skip": {"patterns", "robustness", "knowledge"} - {only},
    }
    alone = audit(model, data, **settings)
    with executors.using(cluster):
        spread = audit(model, data, **settings)
    assert _document(spread) == _document(alone)


@pytest.fixture(scope="module")
def student():
    if not (STUDENT.is_file() and SUBSET.is_file()):
        pytest.skip("the zoo is not built (python models/build_zoo.py)")
    return prepare_model(STUDENT), load_dataset(SUBSET)


def test_knowledge_points_are_the_same_in_process_and_on_two_workers(cluster, student):
    pm, dataset = student
    subset = dataset.subset(13, 0)  # 130 images: two batches of features, two data shards
    fast = KnowledgeSettings(
        grid=4, partners=4, importance_steps=5, sample_max_iter=50, region_max_iter=10
    )
    alone = analyse_knowledge(pm, subset, seed=4, settings=fast, device="cpu")
    seen = []
    with executors.using(cluster):
        spread = analyse_knowledge(
            pm, subset, seed=4, settings=fast, device="cpu", progress=lambda *e: seen.append(e)
        )
    assert json.dumps(spread.to_dict(), default=str) == json.dumps(alone.to_dict(), default=str)
    assert [e[1:] for e in seen if e[0] == "knowledge: features"] == [(0, 1), (1, 2), (2, 2)]
    layers = len(default_layers(pm.info))
    assert [e[1:] for e in seen if e[0] == "knowledge: layers"] == [
        (i, layers) for i in range(layers + 1)
    ]  # one step per finished layer task


def test_features_in_data_shards_are_those_of_one_pass(cluster, student):
    pm, dataset = student
    x = dataset.subset(4, 1).images(pm.info.input_shape)  # 40 images, batches of 8
    layers = default_layers(pm.info)[:2]
    fx = FeatureExtractor(pm, layers, grid=3, sample_feature=True, device="cpu", batch_size=8)
    done = []
    shards = fx.transform_sharded(x, cluster, lambda i, n: done.append((i, n)))
    whole = fx.transform(x)
    assert done == [(1, 2), (2, 2)]
    assert list(shards) == list(whole)
    for key, value in whole.items():
        np.testing.assert_array_equal(shards[key], value, err_msg=key)


@pytest.mark.slow  # 15-25 s: kept out of the everyday suite
def test_compare_on_the_cluster_matches_in_process(tmp_path):
    a, data = make_inputs(tmp_path, n=24, model_seed=0, name="cnn0")
    b, _ = make_inputs(tmp_path, n=24, model_seed=1, name="cnn1")
    out = tmp_path / "cmp"
    args = [str(a), str(b), "--data", str(data), "--out", str(out)]
    alone = compare([a, b], data)
    run = CliRunner().invoke(cli(compare_cli), [*args, "--workers", "2"])
    assert run.exit_code == 0, run.output
    doc = json.loads((out / "result.json").read_text())
    assert [m["settings"]["workers"] for m in doc["models"]] == [2, 2]
    doc.pop("gates", None)
    for m in doc["models"]:
        for name in EXECUTOR_FIELDS:
            m["settings"].pop(name)
    assert doc == _document(alone)


def _die_once(marker: str, value: int) -> int:
    """Kill the worker process the first time it runs (as a crashed or pre-empted worker)."""
    if not Path(marker).exists():
        Path(marker).write_text("died")
        os._exit(1)
    return value * 2


def _always_fails(value: int) -> int:
    raise ValueError(f"cannot do {value}")


def test_a_killed_worker_is_survived(tmp_path, cluster):
    marker = str(tmp_path / "died")
    tasks = [Task("dies once", _die_once, (marker, 1)), Task("plain", _die_once, (marker, 2))]
    assert cluster.run(tasks) == [2, 4]
    assert Path(marker).read_text() == "died"


def test_a_shard_that_keeps_failing_stops_the_run_naming_it(cluster):
    tasks = [Task("good", _die_once, ("/", 1)), Task("patterns classes 3..4", _always_fails, (5,))]
    with pytest.raises(
        ShardFailed,
        match=r"shard 'patterns classes 3..4' failed after 3 tries: ValueError: cannot do 5",
    ):
        cluster.run(tasks)


def _visible_gpu() -> str:
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


def test_without_dask_cuda_each_worker_sees_one_gpu():
    with executors.per_gpu_cluster(distributed, 2) as gpus, distributed.Client(gpus) as client:
        client.wait_for_workers(2)
        assert sorted(client.run(_visible_gpu).values()) == ["0", "1"]


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _scheduler_tasks(dask_scheduler) -> list[str]:
    return [str(key) for key in dask_scheduler.tasks]


def test_ctrl_c_cancels_the_futures_of_the_run(cluster):
    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    tasks = [Task("quick", _sleep, (0.0,)), Task("slow", _sleep, (20.0,))]
    with pytest.raises(KeyboardInterrupt):
        cluster.run(tasks, interrupt)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = cluster.client.run_on_scheduler(_scheduler_tasks)
        if not any("onnxaudit" in key for key in left):
            break
        time.sleep(0.2)
    assert not any("onnxaudit" in key for key in left)
