"""The executor seam without a cluster: in-process order, shard cuts, class shards merged back
into the very search an unsharded run makes, the errors, the audit-many verb."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import cli, make_inputs

from onnxaudit import executors
from onnxaudit.analyses.patterns.search import ClassPatternSearch
from onnxaudit.analyses.patterns.shards import sharded_search
from onnxaudit.cli.audit_many import audit_many
from onnxaudit.errors import AuditError
from onnxaudit.executors import InProcess, ShardFailed, Task, shard_bounds
from onnxaudit.model import prepare_model
from onnxaudit.settings import Settings


class Slots(InProcess):
    """In-process, but cut into `slots` shards like a cluster of that many workers."""

    def __init__(self, slots: int) -> None:
        self.slots = slots


def _pair(a: int, b: int) -> tuple[int, int]:
    return a, b


def test_in_process_runs_tasks_in_order_with_local_arguments():
    seen = []
    tasks = [Task(f"t{i}", _pair, (i,), local={"b": i * 10}) for i in range(3)]
    assert InProcess().run(tasks, lambda i, n: seen.append((i, n))) == [(0, 0), (1, 10), (2, 20)]
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(
    ("n", "shards", "align", "expected"),
    [
        (10, 1, 1, [(0, 10)]),
        (10, 3, 1, [(0, 3), (3, 7), (7, 10)]),
        (12, 2, 4, [(0, 8), (8, 12)]),  # 3 whole batches of 4 over 2 workers
        (3, 8, 1, [(0, 1), (1, 2), (2, 3)]),  # never an empty shard
        (5, 2, 128, [(0, 5)]),  # one batch: one shard
    ],
)
def test_shard_bounds_cover_the_range_in_whole_batches(n, shards, align, expected):
    assert shard_bounds(n, shards, align) == expected


def test_class_shards_merge_into_the_unsharded_search(tmp_path):
    model, _ = make_inputs(tmp_path)
    pm = prepare_model(model)
    rng = np.random.default_rng(1)
    x = rng.random((24, 1, 8, 8), dtype=np.float32)
    y = np.arange(24) % 3
    options = {"k": 0.1, "batch_per_class": 4, "epochs": 2, "canvas": ("confident", "free")}
    from onnxaudit.features.gradients import CrossEntropy, InputGradient

    grad = InputGradient(pm.proto, CrossEntropy(targeted=False, reduction="sum"), "cpu")
    whole = ClassPatternSearch(seed=7, classes=[2, 0, 1], **options).fit(grad, x, y)
    payload = pm.proto.SerializeToString()
    split = sharded_search(payload, x, y, [2, 0, 1], options, 7, "cpu", None, Slots(2))
    assert split.classes_.tolist() == [2, 0, 1]
    assert split.n_steps_ == whole.n_steps_
    for name in ("masks_", "pressure_", "canvases_", "binary_masks_", "loss_history_"):
        np.testing.assert_array_equal(getattr(split, name), getattr(whole, name), err_msg=name)


def test_patterns_in_class_shards_give_the_same_result(tmp_path):
    from onnxaudit.analyses.patterns import analyse_patterns
    from onnxaudit.data import load_dataset

    model, data = make_inputs(tmp_path, n=24)
    pm, dataset = prepare_model(model), load_dataset(data)
    whole = analyse_patterns(pm, dataset, seed=5, device="cpu", epochs=2)
    split = analyse_patterns(pm, dataset, seed=5, device="cpu", epochs=2, executor=Slots(3))
    assert split.to_dict() == whole.to_dict()
    np.testing.assert_array_equal(split.power_table, whole.power_table)


def test_shard_failed_names_the_shard_in_one_line():
    message = str(ShardFailed("patterns classes 0..4", "ValueError: bad"))
    assert message == "shard 'patterns classes 0..4' failed after 3 tries: ValueError: bad"
    assert isinstance(ShardFailed("s", "r"), AuditError) and "\n" not in message


@pytest.mark.parametrize("settings", [{"workers": 2}, {"scheduler": "tcp://127.0.0.1:1"}])
def test_without_dask_the_flags_name_the_extra(monkeypatch, settings):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask[distributed] were absent
    with pytest.raises(AuditError, match=r"pip install 'onnxaudit\[distributed\]'"):
        with executors.session(Settings(**settings)):
            pass


def test_in_process_is_the_default_and_never_imports_dask(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with executors.session(Settings()) as executor:
        assert executor is executors.IN_PROCESS and executors.current() is executor
    assert executors.current() is executors.IN_PROCESS


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"workers": 0}, "--workers must be an integer >= 1"),
        ({"workers": 2, "scheduler": "tcp://h:8786"}, "not both"),
        ({"scheduler": " "}, "--scheduler takes an address"),
    ],
)
def test_executor_settings_are_validated_up_front(changes, message):
    with pytest.raises(AuditError, match=message):
        Settings(**changes)


def test_worker_cache_builds_once_per_model_and_options():
    built = []

    def build():
        built.append(1)
        return object()

    first = executors.worker_cache("test", b"model", (1,), build)
    assert executors.worker_cache("test", b"model", (1,), build) is first
    assert executors.worker_cache("test", b"model", (2,), build) is not first
    assert len(built) == 2


def test_audit_many_writes_a_report_per_model_and_gates_each(tmp_path, runner, fake_analyses):
    a, data = make_inputs(tmp_path, model_seed=0, name="cnn0")
    b, _ = make_inputs(tmp_path, model_seed=1, name="cnn1")
    out = tmp_path / "many"
    args = [str(a), str(b), "--data", str(data), "--out", str(out), "--skip", "knowledge"]
    result = runner.invoke(cli(audit_many), args)
    assert result.exit_code == 0, result.output
    assert (out / "cnn0" / "report.html").exists() and (out / "cnn1" / "result.json").exists()
    rows = json.loads((out / "summary.json").read_text())["models"]
    assert [row["model"] for row in rows] == ["cnn0", "cnn1"]
    assert "| cnn1 | pass: no class's pattern looks implanted |" in (out / "summary.md").read_text()
    failing = runner.invoke(cli(audit_many), [*args, "--min-robust-accuracy", "0.5"])
    assert failing.exit_code == 1
    assert "2 of 2 models failed a gate: cnn0, cnn1" in failing.output


def test_audit_many_refuses_models_whose_reports_would_collide(tmp_path, runner):
    a, data = make_inputs(tmp_path)
    (tmp_path / "other").mkdir()
    b, _ = make_inputs(tmp_path / "other")
    result = runner.invoke(cli(audit_many), [str(a), str(b), "-d", str(data), "-o", str(tmp_path)])
    assert result.exit_code == 2 and "two models named cnn" in result.output
