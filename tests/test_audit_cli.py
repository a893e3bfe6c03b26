"""`onnxaudit audit` exit codes and outputs, with the analyses replaced by known results.

The analyses have their own tests; here they return hand-made sections so that every exit code
(0 pass, 1 gate failed, 2 usage/input error) is checked in milliseconds on a tiny real model.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from conftest import cli
from typer.testing import CliRunner

from onnxaudit.cli.audit import audit
from onnxaudit.results.schema import SCHEMA

runner = CliRunner()
app = cli(audit)


@pytest.fixture
def files(tiny_inputs):
    return tiny_inputs


def run(files, out, *extra):
    model, data = files
    return runner.invoke(app, [str(model), "--data", str(data), "--out", str(out), *extra])


def test_all_gates_pass_exit_0_with_report_result_and_junit(files, tmp_path, fake_analyses):
    out = tmp_path / "out"
    result = run(files, out, "--junit", str(out / "junit.xml"), "--fail-on", "backdoor",
                 "--min-reliable-ratio=-1=0.75", "--min-robust-accuracy", "0.4", "--per-class", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "PASS backdoor" in result.output and "PASS min-robust-accuracy" in result.output
    doc = json.loads((out / "result.json").read_text())
    assert doc["schema"] == SCHEMA and doc["data"]["n"] == 6
    assert [g["passed"] for g in doc["gates"]] == [True, True, True]
    assert doc["settings"]["per_class"] == 2 and doc["model"]["sha256"]
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "0"
    assert "Audit of cnn" in (out / "report.html").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "report.html", "result.json"]


def test_backdoor_gate_fails_exit_1_and_says_which(files, tmp_path, fake_analyses):
    fake_analyses["suspected"] = True
    out = tmp_path / "out"
    result = run(files, out, "--fail-on", "backdoor", "--junit", str(out / "junit.xml"))
    assert result.exit_code == 1, result.output
    assert "FAIL backdoor: backdoor suspected, target class 1" in result.output
    assert "1 of 1 gates failed: backdoor" in result.output
    failure = ET.parse(out / "junit.xml").getroot().find("testsuite/testcase/failure")
    assert "target class 1" in failure.get("message")
    html = (out / "report.html").read_text()
    assert "0/1 passed; failed: backdoor" in html


def test_robust_accuracy_gate_fails_exit_1(files, tmp_path, fake_analyses):
    fake_analyses["robust"] = 0.1
    result = run(files, tmp_path / "out", "--min-robust-accuracy", "0.2", "--eps", "0.05",
                 "--steps", "3")  # fmt: skip
    assert result.exit_code == 1
    assert "robust accuracy 0.100 < 0.2 (eps 0.05, 3 steps)" in result.output
    assert ("robustness", 0.05, 3) in fake_analyses["calls"]


def test_baseline_drop_gate_and_baseline_layers_reused(files, tmp_path, fake_analyses):
    first = run(files, tmp_path / "base", "--layers", "relu2")
    assert first.exit_code == 0, first.output
    baseline = tmp_path / "base" / "result.json"
    doc = json.loads(baseline.read_text())
    doc["knowledge"]["layers"][0]["knowledge_points"] = 4.0  # the new 3.0 is a 25 % drop
    baseline.write_text(json.dumps(doc))
    ok = run(files, tmp_path / "a", "--baseline", str(baseline), "--max-drop", "30")
    assert ok.exit_code == 0, ok.output
    assert fake_analyses["calls"][-3] == ("knowledge", ["relu2"], 12)  # the baseline's layers
    bad = run(files, tmp_path / "b", "--baseline", str(baseline), "--max-drop", "20")
    assert bad.exit_code == 1
    assert "FAIL max-drop[relu2]" in bad.output and "-25.0%" in bad.output


def test_skip_leaves_sections_null(files, tmp_path, fake_analyses):
    result = run(files, tmp_path / "out", "--skip", "knowledge,robustness")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["knowledge"] is None and doc["robustness"] is None and doc["patterns"]
    assert doc["settings"]["skip"] == ["knowledge", "robustness"]
    assert fake_analyses["calls"] == [("patterns",)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fail-on", "backdoor", "--skip", "patterns"], "need patterns"),
        (["--fail-on", "accuracy"], "--fail-on takes 'backdoor'"),
        (["--max-drop", "5"], "--baseline and --max-drop must be given together"),
        (["--min-reliable-ratio", "relu2"], "expected LAYER=VALUE"),
        (["--min-reliable-ratio", "conv9=0.5"], "no analysed layer 'conv9'"),
        (["--min-robust-accuracy", "40"], "fractions in [0, 1]"),
        (["--skip", "everything"], "cannot skip everything"),
        (["--baseline", "missing.json", "--max-drop", "5"], "cannot read result"),
    ],
)
def test_usage_errors_exit_2_one_line_no_outputs(files, tmp_path, fake_analyses, extra, message):
    out = tmp_path / "out"
    result = run(files, out, *extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_input_errors_exit_2(files, tmp_path, fake_analyses):
    model, data = files
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    cases = [
        [str(tmp_path / "nope.onnx"), "--data", str(data)],
        [str(model), "--data", str(tmp_path / "nope.npz")],
        [str(model), "--data", str(data), "--baseline", str(bad_json), "--max-drop", "1"],
    ]
    for args in cases:
        result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert not (tmp_path / "out").exists()
