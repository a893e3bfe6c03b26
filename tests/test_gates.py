"""Gates are pure functions on result dicts: tested on hand-made results with known verdicts."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

import pytest

from onnxaudit.errors import AuditError
from onnxaudit.results.gates import (
    GateSpec,
    check_backdoor,
    check_max_drop,
    check_reliable_ratio,
    check_robust_accuracy,
    evaluate,
    junit_xml,
    parse_threshold,
    relative_drop,
)
from onnxaudit.results.schema import SCHEMA


def make_result(suspected=False, ratios=(0.2, 0.5, 0.8), points=(4.0, 6.0, 8.0), robust=0.3):
    layers = [
        {
            "name": f"/features/f{i}/Relu_output_0",
            "knowledge_points": p,
            "reliable_knowledge_points": p * r,
            "reliable_ratio": r,
        }
        for i, (r, p) in enumerate(zip(ratios, points, strict=True))
    ]
    return {
        "schema": SCHEMA,
        "tool": {"name": "onnxaudit", "version": "0"},
        "model": {"sha256": "ab" * 32, "classes": ["shirt", "bag"]},
        "data": {},
        "knowledge": {"layers": layers},
        "patterns": {
            "classes": [
                {
                    "class": 0,
                    "name": "shirt",
                    "predictive_power": 0.5,
                    "mask_l1": 9.0,
                    "anomaly_index": 0.1,
                },
                {
                    "class": 1,
                    "name": "bag",
                    "predictive_power": 1.0,
                    "mask_l1": 1.0,
                    "anomaly_index": 4.2,
                },
            ],
            "backdoor": {"suspected": suspected, "classes": [1] if suspected else []},
        },
        "robustness": {"clean_accuracy": 0.9, "robust_accuracy": robust, "eps": 0.1, "steps": 10},
    }


def test_backdoor_gate_follows_the_verdict_and_names_the_target():
    assert check_backdoor(make_result(suspected=False)).passed
    failed = check_backdoor(make_result(suspected=True))
    assert not failed.passed
    assert "1 (bag)" in failed.message


def test_reliable_ratio_by_name_index_and_all():
    result = make_result()
    (last,) = check_reliable_ratio(result, "-1", 0.8)
    assert last.passed and "0.800 >= 0.8" in last.message
    (first,) = check_reliable_ratio(result, "/features/f0/Relu_output_0", 0.25)
    assert not first.passed
    every = check_reliable_ratio(result, "*", 0.5)
    assert [o.passed for o in every] == [False, True, True]


def test_reliable_ratio_unknown_layer_is_a_usage_error_listing_the_layers():
    with pytest.raises(AuditError, match="f2/Relu_output_0"):
        check_reliable_ratio(make_result(), "conv9", 0.5)


def test_undefined_reliable_ratio_fails():
    result = make_result()
    result["knowledge"]["layers"][0]["reliable_ratio"] = None
    (outcome,) = check_reliable_ratio(result, "0", 0.0)
    assert not outcome.passed and "undefined" in outcome.message


def test_robust_accuracy_threshold_is_inclusive():
    assert check_robust_accuracy(make_result(robust=0.3), 0.3).passed
    assert not check_robust_accuracy(make_result(robust=0.29), 0.3).passed


def test_relative_drop_known_values():
    assert relative_drop(10.0, 7.5) == pytest.approx(25.0)
    assert relative_drop(10.0, 12.0) == 0.0
    assert relative_drop(0.0, 0.0) == 0.0
    assert relative_drop(0.5, None) == 100.0


def test_max_drop_flags_only_the_layer_that_fell_too_far():
    baseline = make_result()
    current = copy.deepcopy(baseline)
    current["knowledge"]["layers"][1]["knowledge_points"] = 6.0 * 0.85  # -15 %
    current["knowledge"]["layers"][2]["reliable_ratio"] = 0.8 * 0.95  # -5 %
    outcomes = check_max_drop(current, baseline, max_drop=10.0)
    assert [o.passed for o in outcomes] == [True, False, True]
    assert "-15.0%" in outcomes[1].message
    assert all(o.passed for o in check_max_drop(current, baseline, max_drop=15.0 + 1e-9))


def test_max_drop_fails_for_a_layer_missing_from_the_new_result():
    baseline = make_result()
    current = copy.deepcopy(baseline)
    current["knowledge"]["layers"].pop(0)
    outcomes = check_max_drop(current, baseline, 50.0)
    assert not outcomes[0].passed and "not analysed" in outcomes[0].message


def test_missing_analysis_is_a_usage_error_not_a_pass():
    result = make_result()
    result["patterns"] = None
    with pytest.raises(AuditError, match="patterns analysis"):
        evaluate(result, GateSpec(fail_on_backdoor=True))


def test_spec_validation_and_needs():
    with pytest.raises(AuditError, match="together"):
        GateSpec(max_drop=5.0)
    with pytest.raises(AuditError, match=r"\[0, 1\]"):
        GateSpec(min_robust_accuracy=30.0)
    spec = GateSpec(fail_on_backdoor=True, min_robust_accuracy=0.1)
    assert spec.needs() == {"patterns", "robustness"}


def test_parse_threshold_splits_on_the_last_equals():
    assert parse_threshold("a=b=0.25") == ("a=b", 0.25)
    with pytest.raises(AuditError):
        parse_threshold("0.25")
    with pytest.raises(AuditError):
        parse_threshold("layer=high")


def test_evaluate_order_and_junit_roundtrip():
    baseline = make_result()
    result = make_result(suspected=True, robust=0.05)
    spec = GateSpec(
        fail_on_backdoor=True,
        min_reliable_ratio=[("-1", 0.5)],
        min_robust_accuracy=0.1,
        baseline=baseline,
        max_drop=10.0,
    )
    outcomes = evaluate(result, spec)
    assert [o.name for o in outcomes][:3] == [
        "backdoor",
        "min-reliable-ratio[/features/f2/Relu_output_0]",
        "min-robust-accuracy",
    ]
    assert len(outcomes) == 3 + 3
    root = ET.fromstring(junit_xml(outcomes))
    suite = root.find("testsuite")
    assert suite.get("tests") == "6" and suite.get("failures") == "2"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [o.name for o in outcomes]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["backdoor", "min-robust-accuracy"]


def test_junit_escapes_markup_in_messages():
    result = make_result(suspected=True)
    result["patterns"]["classes"][1]["name"] = '<script>"x"&'
    xml = junit_xml([check_backdoor(result)])
    assert "<script>" not in xml
    message = ET.fromstring(xml).find("testsuite/testcase/failure").get("message")
    assert '<script>"x"&' in message


def test_an_inconclusive_backdoor_verdict_fails_unless_allowed():
    from onnxaudit.results.gates import check_backdoor

    result = {
        "model": {"classes": ["a", "b"]},
        "patterns": {
            "classes": [],
            "backdoor": {
                "outcome": "inconclusive",
                "suspected": False,
                "classes": [],
                "inconclusive_reasons": ["classes 2-999 were never searched"],
            },
        },
    }
    failed = check_backdoor(result)
    assert not failed.passed and "never searched" in failed.message
    assert "--allow-inconclusive" in failed.message
    assert check_backdoor(result, allow_inconclusive=True).passed
    result["patterns"]["backdoor"] = {"outcome": "clear", "suspected": False, "classes": []}
    assert check_backdoor(result).passed
