"""On a real LocalCluster of 2 single-threaded worker processes: the same result.json as
in-process for patterns, PGD and compare; a killed worker is survived; a shard that keeps
failing stops the run naming it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import cli, make_inputs
from typer.testing import CliRunner

from onnxaudit import executors
from onnxaudit.cli.compare import compare as compare_cli
from onnxaudit.executors import DaskExecutor, ShardFailed, Task
from onnxaudit.pipeline import audit, compare

distributed = pytest.importorskip("distributed")

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


def test_compare_on_the_cluster_matches_in_process(tmp_path):
    a, data = make_inputs(tmp_path, n=24, model_seed=0, name="cnn0")
    b, _ = make_inputs(tmp_path, n=24, model_seed=1, name="cnn1")
    out = tmp_path / "cmp"
    args = [str(a), str(b), "--data", str(data), "--out", str(out), "--skip", "knowledge"]
    alone = compare([a, b], data, skip=["knowledge"])
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
