"""The CI contract: exit codes 0/1/2/3, every validation before any work, the output lock, and
compare's gates. The analyses are the fakes of conftest (milliseconds) unless a test needs the
real ones."""

from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
from conftest import cli, make_inputs
from graphs import small_cnn

from onnxaudit import pipeline
from onnxaudit.cli.audit import audit
from onnxaudit.cli.compare import compare
from onnxaudit.outputs import LOCK_NAME

AUDIT = cli(audit)


def invoke(runner, model, data, out, *extra):
    return runner.invoke(AUDIT, [str(model), "--data", str(data), "--out", str(out), *extra])


def one_line_error(result, code=2):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_internal_error_exits_3_with_a_log_not_a_traceback(
    tiny_inputs, tmp_path, runner, monkeypatch
):
    def broken(*args):
        raise RuntimeError("injected fault")

    monkeypatch.setitem(pipeline.ANALYSES, "patterns", broken)
    out = tmp_path / "out"
    line = one_line_error(invoke(runner, *tiny_inputs, out, "--only", "patterns"), code=3)
    assert line.startswith("internal error: RuntimeError: injected fault")
    log = out / "onnxaudit-error.log"
    assert str(log) in line
    assert "Traceback" in log.read_text() and "injected fault" in log.read_text()
    assert not (out / "result.json").exists() and not (out / LOCK_NAME).exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "-0.5"], "--eps must be in [0, 1]"),
        (["--eps", "2"], "--eps must be in [0, 1]"),
        (["--steps", "0"], "--steps must be an integer >= 1"),
        (["--threads", "-1"], "--threads must be an integer >= 0"),
        (["--per-class", "0"], "--per-class must be an integer >= 1"),
        (["--pattern-epochs", "0"], "--pattern-epochs must be > 0"),
        (["--device", "tpu"], "--device takes auto, cpu, cuda"),
        (["--only", "patterns", "--skip", "knowledge"], "--skip or --only"),
    ],
)
def test_option_ranges_are_usage_errors_before_any_work(
    tiny_inputs, tmp_path, runner, fake_analyses, extra, message
):
    start = time.perf_counter()
    line = one_line_error(invoke(runner, *tiny_inputs, tmp_path / "out", *extra))
    assert message in line
    assert fake_analyses["calls"] == [] and not (tmp_path / "out").exists()
    assert time.perf_counter() - start < 10


def test_bad_data_and_models_are_input_errors(tmp_path, runner, fake_analyses):
    model, _ = make_inputs(tmp_path)
    x = np.random.default_rng(0).random((6, 8, 8)).astype(np.float32)
    x[2, 3, 3] = np.nan
    nan_data = tmp_path / "nan.npz"
    np.savez(nan_data, x=x, y=np.arange(6) % 3)
    assert "image 2 has NaN" in one_line_error(invoke(runner, model, nan_data, tmp_path / "o"))
    one = tmp_path / "one.npz"
    np.savez(one, x=x[:1].clip(0, 1), y=np.array([0]))
    line = one_line_error(invoke(runner, model, one, tmp_path / "o", "--only", "knowledge"))
    assert "knowledge needs images of at least 2 classes" in line
    two = tmp_path / "two.npz"
    np.savez(two, x=np.nan_to_num(x[:2]), y=np.arange(2))
    line = one_line_error(invoke(runner, model, two, tmp_path / "o", "--only", "knowledge"))
    assert "knowledge needs at least 4 images" in line
    few = tmp_path / "few.npz"
    np.savez(few, x=np.nan_to_num(x[:3]), y=np.arange(3))
    line = one_line_error(invoke(runner, model, few, tmp_path / "o", "--only", "patterns"))
    assert "patterns needs at least 2 images of each class" in line
    bad = small_cnn(seed=0)
    for init in bad.graph.initializer:
        init.CopyFrom(onnx.numpy_helper.from_array(
            np.full(onnx.numpy_helper.to_array(init).shape, np.inf, np.float32), init.name))  # fmt: skip
    nan_model = tmp_path / "nan-model.onnx"
    onnx.save(bad, nan_model)
    line = one_line_error(invoke(runner, nan_model, tmp_path / "data.npz", tmp_path / "o"))
    assert "nan-model.onnx" in line and "NaN or infinite" in line
    text = tmp_path / "fake.npz"
    text.write_text("hello")
    assert "cannot read the .npz" in one_line_error(invoke(runner, model, text, tmp_path / "o"))
    assert fake_analyses["calls"] == []


def test_out_must_be_a_writable_folder(tiny_inputs, tmp_path, runner, fake_analyses):
    existing = tmp_path / "a-file"
    existing.write_text("x")
    assert "--out must be a folder" in one_line_error(invoke(runner, *tiny_inputs, existing))
    if os.geteuid() != 0:  # root writes everywhere
        locked = tmp_path / "ro"
        locked.mkdir()
        locked.chmod(0o500)
        assert "cannot be created" in one_line_error(invoke(runner, *tiny_inputs, locked / "x"))
    assert fake_analyses["calls"] == []


def test_a_running_audit_locks_its_output_folder(tiny_inputs, tmp_path, runner, fake_analyses):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(str(os.getppid()))  # a live process holds it
    line = one_line_error(invoke(runner, *tiny_inputs, out))
    assert "another onnxaudit run" in line and fake_analyses["calls"] == []
    (out / LOCK_NAME).write_text("999999999")  # a dead one: taken over
    done = invoke(runner, *tiny_inputs, out)
    assert done.exit_code == 0, done.output
    assert not (out / LOCK_NAME).exists() and (out / "result.json").exists()


def test_a_failed_run_leaves_the_last_complete_outputs(
    tiny_inputs, tmp_path, runner, fake_analyses, monkeypatch
):
    out = tmp_path / "out"
    assert invoke(runner, *tiny_inputs, out, "--seed", "5").exit_code == 0
    before = (out / "result.json").read_text()
    monkeypatch.setitem(pipeline.ANALYSES, "knowledge", lambda *a: 1 / 0)
    assert invoke(runner, *tiny_inputs, out, "--seed", "6").exit_code == 3
    assert (out / "result.json").read_text() == before


def test_compare_gates_apply_to_every_model_with_junit(tmp_path, runner, fake_analyses):
    fake_analyses["suspected"] = True
    a, data = make_inputs(tmp_path, n=9, model_seed=0, name="a")
    b, _ = make_inputs(tmp_path, n=9, model_seed=1, name="b")
    out = tmp_path / "cmp"
    args = [str(a), str(b), "--data", str(data), "--out", str(out), "--fail-on", "backdoor",
            "--min-robust-accuracy", "0.3", "--junit", str(out / "junit.xml")]  # fmt: skip
    result = runner.invoke(cli(compare), args)
    assert result.exit_code == 1, result.output
    assert "FAIL a: backdoor" in result.output and "FAIL b: backdoor" in result.output
    assert "PASS a: min-robust-accuracy" in result.output
    assert "2 of 4 gates failed" in result.output
    table = [line for line in result.output.splitlines() if line.startswith(("a ", "b "))]
    assert len(table) == 2 and all("fail" in line for line in table)
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "2"
    doc = json.loads((out / "result.json").read_text())
    assert [g["passed"] for g in doc["gates"]] == [False, True, False, True]


def test_a_baseline_of_another_model_is_refused_before_work(
    tiny_inputs, tmp_path, runner, fake_analyses
):
    model, data = tiny_inputs
    baseline = tmp_path / "other.json"
    doc = {"schema": "onnxaudit/result@1", "tool": {}, "data": {},
           "model": {"name": "resnet", "sha256": "ab" * 32},
           "knowledge": {"layers": [{"name": "/layer4/relu", "knowledge_points": 3.0}]}}  # fmt: skip
    baseline.write_text(json.dumps(doc))
    line = one_line_error(invoke(runner, model, data, tmp_path / "o", "--baseline", str(baseline),
                                 "--max-drop", "10"))  # fmt: skip
    assert "result of resnet (sha256 abababababab)" in line
    assert fake_analyses["calls"] == []
