"""CI gates: pure functions from result@1 dicts to pass/fail outcomes, and their JUnit XML.

Gates never run a model, so a CI job can re-check an old result.json and the rules are unit-tested
on hand-made dicts. A gate whose analysis is missing from the result is a usage error (AuditError,
exit 2), not a failure: silently passing a gate that was never evaluated would hide problems.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from onnxaudit.errors import AuditError

if TYPE_CHECKING:
    from onnxaudit.model import ModelInfo

ALL_LAYERS = "*"


@dataclass(frozen=True)
class GateOutcome:
    """One evaluated gate: a JUnit test case, a line on stdout, a row in the report."""

    name: str
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateSpec:
    """The gates a user asked for on the command line."""

    fail_on_backdoor: bool = False
    allow_inconclusive: bool = False  # an inconclusive backdoor verdict passes the gate
    min_reliable_ratio: list[tuple[str, float]] = field(default_factory=list)
    min_robust_accuracy: float | None = None
    baseline: dict[str, Any] | None = None
    max_drop: float | None = None

    def __post_init__(self) -> None:
        if (self.baseline is None) != (self.max_drop is None):
            raise AuditError("--baseline and --max-drop must be given together")
        if self.max_drop is not None and not (math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise AuditError(f"--max-drop must be a percentage >= 0, got {self.max_drop}")
        for value in [v for _, v in self.min_reliable_ratio] + [self.min_robust_accuracy]:
            if value is not None and not 0.0 <= value <= 1.0:
                raise AuditError(f"gate thresholds are fractions in [0, 1], got {value}")

    def needs(self) -> set[str]:
        """The analyses these gates read, so the audit can refuse to skip them."""
        needed = set()
        if self.fail_on_backdoor:
            needed.add("patterns")
        if self.min_reliable_ratio or self.baseline is not None:
            needed.add("knowledge")
        if self.min_robust_accuracy is not None:
            needed.add("robustness")
        return needed

    def to_dict(self) -> dict[str, Any]:
        return {
            "fail_on_backdoor": self.fail_on_backdoor,
            "allow_inconclusive": self.allow_inconclusive,
            "min_reliable_ratio": [[layer, value] for layer, value in self.min_reliable_ratio],
            "min_robust_accuracy": self.min_robust_accuracy,
            "baseline_sha256": None if self.baseline is None else self.baseline["model"]["sha256"],
            "max_drop": self.max_drop,
        }


def baseline_layers(info: ModelInfo, baseline: Mapping[str, Any] | None) -> tuple[str, ...] | None:
    """The baseline's analysed layers when this model has all of them, so --max-drop compares
    like with like; None (the analysis's default choice) otherwise."""
    if baseline is None:
        return None
    names = [entry["name"] for entry in (baseline.get("knowledge") or {}).get("layers") or []]
    candidates = {layer.name for layer in info.layers}
    return tuple(names) if names and set(names) <= candidates else None


def parse_threshold(text: str) -> tuple[str, float]:
    """`LAYER=VALUE` -> (layer, value); the last '=' splits, as ONNX names may contain '='."""
    layer, sep, value = text.rpartition("=")
    if not sep or not layer:
        raise AuditError(f"expected LAYER=VALUE, got {text!r}")
    try:
        return layer, float(value)
    except ValueError:
        raise AuditError(f"threshold in {text!r} is not a number") from None


def _section(result: Mapping[str, Any], name: str, gate: str) -> dict[str, Any]:
    section = result.get(name)
    if not section:
        raise AuditError(f"gate {gate} needs the {name} analysis, which is not in the result")
    return section


def _layers(result: Mapping[str, Any], gate: str) -> list[dict[str, Any]]:
    return list(_section(result, "knowledge", gate).get("layers") or [])


def resolve_layers(result: Mapping[str, Any], layer: str, gate: str) -> list[dict[str, Any]]:
    """Layer entries matching `layer`: an exact name, '*' for all, or an index such as -1 (last)."""
    layers = _layers(result, gate)
    if layer == ALL_LAYERS:
        return layers
    exact = [entry for entry in layers if entry["name"] == layer]
    if exact:
        return exact
    try:
        return [layers[int(layer)]]
    except (ValueError, IndexError):
        names = ", ".join(entry["name"] for entry in layers) or "none"
        raise AuditError(f"gate {gate}: no analysed layer {layer!r} (analysed: {names})") from None


def check_baseline_matches(spec: GateSpec, info: ModelInfo) -> None:
    """Before any work: a --baseline must be a result of a model with the same layers."""
    if spec.baseline is None:
        return
    names = [e["name"] for e in (spec.baseline.get("knowledge") or {}).get("layers") or []]
    candidates = {layer.name for layer in info.layers}
    missing = [name for name in names if name not in candidates]
    if missing:
        model = spec.baseline.get("model") or {}
        raise AuditError(
            f"--baseline analysed layer {missing[0]!r}, which this model does not have: it is a "
            f"result of {model.get('name', '?')} (sha256 {str(model.get('sha256', '?'))[:12]}); "
            f"give a baseline of this model"
        )


def check_gate_layers(spec: GateSpec, analysed: Sequence[str]) -> None:
    """Before any work: every --min-reliable-ratio layer must be one the run will analyse."""
    entries = [{"name": name} for name in analysed]
    for layer, _ in spec.min_reliable_ratio:
        resolve_layers({"knowledge": {"layers": entries}}, layer, "--min-reliable-ratio")


def check_backdoor(result: Mapping[str, Any], allow_inconclusive: bool = False) -> GateOutcome:
    """Fails when the class-wise pattern analysis suspects a backdoor, and when it could not
    judge (inconclusive) unless that is explicitly allowed: a check that did not run never
    passes silently."""
    patterns = _section(result, "patterns", "--fail-on backdoor")
    verdict = patterns.get("backdoor") or {}
    classes = list(verdict.get("classes") or [])
    if verdict.get("outcome") == "inconclusive":
        reasons = (
            "; ".join(verdict.get("inconclusive_reasons") or []) or "the search could not judge"
        )
        if allow_inconclusive:
            return GateOutcome("backdoor", True, f"inconclusive, allowed: {reasons}")
        return GateOutcome(
            "backdoor", False, f"inconclusive: {reasons} (--allow-inconclusive lets it pass)"
        )
    if not verdict.get("suspected"):
        return GateOutcome("backdoor", True, "no backdoor suspected")
    names = _class_names(result, patterns)
    shown = ", ".join(f"{c} ({names.get(c, '?')})" for c in classes) or "unknown class"
    return GateOutcome("backdoor", False, f"backdoor suspected, target class {shown}")


def _class_names(result: Mapping[str, Any], patterns: Mapping[str, Any]) -> dict[int, str]:
    names = {
        entry["class"]: str(entry.get("name", entry["class"]))
        for entry in patterns.get("classes", [])
    }
    for index, name in enumerate(result.get("model", {}).get("classes", [])):
        names.setdefault(index, str(name))
    return names


def check_reliable_ratio(
    result: Mapping[str, Any], layer: str, minimum: float
) -> list[GateOutcome]:
    """Each matching layer's reliable ratio must be at least `minimum`."""
    gate = f"--min-reliable-ratio {layer}={minimum}"
    outcomes = []
    for entry in resolve_layers(result, layer, gate):
        ratio = entry.get("reliable_ratio")
        passed = ratio is not None and ratio >= minimum
        shown = "undefined (no knowledge points)" if ratio is None else f"{ratio:.3f}"
        relation = ">=" if passed else "<"
        outcomes.append(
            GateOutcome(
                f"min-reliable-ratio[{entry['name']}]",
                passed,
                f"reliable ratio {shown} {relation} {minimum:g}",
            )
        )
    return outcomes


def check_robust_accuracy(result: Mapping[str, Any], minimum: float) -> GateOutcome:
    """PGD robust accuracy must be at least `minimum`."""
    robustness = _section(result, "robustness", "--min-robust-accuracy")
    accuracy = float(robustness["robust_accuracy"])
    passed = accuracy >= minimum
    return GateOutcome(
        "min-robust-accuracy",
        passed,
        f"robust accuracy {accuracy:.3f} {'>=' if passed else '<'} {minimum:g} "
        f"(eps {robustness.get('eps')}, {robustness.get('steps')} steps)",
    )


DROP_METRICS = ("knowledge_points", "reliable_ratio")


def relative_drop(old: float | None, new: float | None) -> float:
    """Percentage fall from `old` to `new`; 0 when nothing could fall (old missing or zero)."""
    if old is None or old <= 0:
        return 0.0
    if new is None:
        return 100.0
    return max(0.0, (old - new) / old * 100.0)


def check_max_drop(
    result: Mapping[str, Any], baseline: Mapping[str, Any], max_drop: float
) -> list[GateOutcome]:
    """Per baseline layer: knowledge points and reliable ratio may fall at most `max_drop` percent.

    A baseline layer the new result does not contain fails: a renamed or removed layer must be a
    deliberate baseline update, not something the gate waves through.
    """
    gate = "--baseline/--max-drop"
    current = {entry["name"]: entry for entry in _layers(result, gate)}
    outcomes = []
    for old in _layers(baseline, gate + " (baseline)"):
        name = f"max-drop[{old['name']}]"
        new = current.get(old["name"])
        if new is None:
            outcomes.append(GateOutcome(name, False, "layer not analysed in this result"))
            continue
        drops = {metric: relative_drop(old.get(metric), new.get(metric)) for metric in DROP_METRICS}
        worst = max(drops, key=drops.get)
        passed = drops[worst] <= max_drop
        detail = ", ".join(
            f"{metric} {_fmt(old.get(metric))} -> {_fmt(new.get(metric))} (-{drops[metric]:.1f}%)"
            for metric in DROP_METRICS
        )
        verdict = "within" if passed else "exceeds"
        outcomes.append(GateOutcome(name, passed, f"{detail}; {verdict} {max_drop:g}%"))
    return outcomes


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def evaluate(result: Mapping[str, Any], spec: GateSpec) -> list[GateOutcome]:
    """Every requested gate on one result, in a stable order."""
    outcomes: list[GateOutcome] = []
    if spec.fail_on_backdoor:
        outcomes.append(check_backdoor(result, spec.allow_inconclusive))
    for layer, minimum in spec.min_reliable_ratio:
        outcomes.extend(check_reliable_ratio(result, layer, minimum))
    if spec.min_robust_accuracy is not None:
        outcomes.append(check_robust_accuracy(result, spec.min_robust_accuracy))
    if spec.baseline is not None and spec.max_drop is not None:
        outcomes.extend(check_max_drop(result, spec.baseline, spec.max_drop))
    return outcomes


def evaluate_many(results: list[Mapping[str, Any]], spec: GateSpec) -> list[GateOutcome]:
    """Every requested gate on every model (compare); each outcome names its model."""
    return [
        GateOutcome(f"{result['model']['name']}: {o.name}", o.passed, o.message)
        for result in results
        for o in evaluate(result, spec)
    ]


def junit_xml(outcomes: list[GateOutcome], suite: str = "onnxaudit") -> str:
    """JUnit XML with one test case per gate outcome (CI systems render failures from it)."""
    failures = sum(not o.passed for o in outcomes)
    root = ET.Element("testsuites", tests=str(len(outcomes)), failures=str(failures))
    node = ET.SubElement(
        root, "testsuite", name=suite, tests=str(len(outcomes)), failures=str(failures), errors="0"
    )
    for outcome in outcomes:
        case = ET.SubElement(node, "testcase", classname=f"{suite}.gates", name=outcome.name)
        if outcome.passed:
            ET.SubElement(case, "system-out").text = outcome.message
        else:
            ET.SubElement(
                case, "failure", message=outcome.message, type="GateFailed"
            ).text = outcome.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
