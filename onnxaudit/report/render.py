"""Rendering the self-contained HTML report: one file, inline CSS, figures as data: URIs, no script, no network.

`render_report` takes a result@1 (audit) or compare@1 document and optional extra figures per
section; everything else it needs (tables, verdicts, built-in charts) comes from the document, so
a report can be re-rendered from result.json alone. Jinja2 autoescaping is always on: class and
model names are untrusted text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from onnxaudit.errors import AuditError
from onnxaudit.report.figures import (
    EmbeddedFigure,
    anomaly_heatmap,
    embed_figure,
    emergence_chart,
    knowledge_chart,
    model_label,
    patterns_chart,
    robustness_chart,
    shared_space_chart,
    short_layer,
    verdict_tests_chart,
)
from onnxaudit.report.verdict_view import backdoor_view
from onnxaudit.results.schema import COMPARE_SCHEMA, SCHEMA, SECTIONS

FigureMap = Mapping[str, Sequence[EmbeddedFigure]]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("onnxaudit.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["short_layer"] = short_layer
_ENV.filters["num"] = lambda v, digits=3: _number(v, digits)


def render_report(
    doc: Mapping[str, Any], figures: FigureMap | None = None, notes: Sequence[str] = ()
) -> str:
    """The HTML text of an audit (result@1) or comparison (compare@1) report."""
    extra = {key: list(value) for key, value in (figures or {}).items()}
    schema = doc.get("schema")
    if schema == SCHEMA:
        return _render_audit(doc, extra, list(notes))
    if schema == COMPARE_SCHEMA:
        return _render_compare(doc, extra, list(notes))
    raise AuditError(f"cannot render a report for schema {schema!r}")


def _render_audit(doc: Mapping[str, Any], extra: dict, notes: list[str]) -> str:
    figures = {
        "knowledge": _builtin(knowledge_chart([doc]), "Knowledge points per layer")
        + _builtin(emergence_chart(doc), "Emergence of knowledge points during training")
        + extra.get("knowledge", []),
        "patterns": _builtin(
            verdict_tests_chart(doc), "The verdict's tests per class", TESTS_CAPTION
        )
        + _builtin(patterns_chart(doc), "Class-wise patterns", PATTERNS_CAPTION)
        + extra.get("patterns", []),
        "robustness": _builtin(robustness_chart([doc]), "Clean vs PGD accuracy")
        + extra.get("robustness", []),
    }
    return _ENV.get_template("audit.html.j2").render(
        title=f"onnxaudit: {model_label(doc)}",
        doc=doc,
        summary=verdicts(doc),
        backdoor=backdoor_view(doc.get("patterns"), extra),
        gates=doc.get("gates") or [],
        figures=figures,
        appendix=appendix(doc),
        notes=notes,
    )


def _render_compare(doc: Mapping[str, Any], extra: dict, notes: list[str]) -> str:
    models = list(doc["models"])
    common = _run_rows(models[0])
    shared = (doc.get("comparison") or {}).get("knowledge") or []
    figures = {
        "knowledge": _builtin(knowledge_chart(models), "Knowledge points per layer, all models")
        + extra.get("knowledge", []),
        "patterns": _builtin(
            anomaly_heatmap(models), "Anomaly index per model and class", HEATMAP_CAPTION
        )
        + extra.get("patterns", []),
        "robustness": _builtin(robustness_chart(models), "Clean vs PGD accuracy")
        + extra.get("robustness", []),
        "comparison": _builtin(shared_space_chart(shared), "Knowledge in the reference's space")
        + extra.get("comparison", []),
    }
    return _ENV.get_template("compare.html.j2").render(
        title="onnxaudit: " + " vs ".join(model_label(m) for m in models),
        doc=doc,
        models=[
            {
                "doc": m,
                "summary": verdicts(m),
                "backdoor": backdoor_view(m.get("patterns"), extra, i),
                "differences": _differences(m, common),
            }
            for i, m in enumerate(models)
        ],
        shared_appendix=common,
        comparison=flatten(
            doc.get("comparison") or {}, skip={"reference", "models", "layer_deltas", "knowledge"}
        ),
        figures=figures,
        notes=notes,
    )


def _number(value: float | None, digits: int) -> str:
    """Fixed decimals for table cells; huge values (e.g. an anomaly index over a zero MAD) in
    scientific notation so they stay readable."""
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) >= 1e5 else f"{value:.{digits}f}"


def _builtin(fig: Any, title: str, caption: str = "") -> list[EmbeddedFigure]:
    return [] if fig is None else [embed_figure(fig, title, caption)]


# Captions that say which chart is the verdict's and which is only descriptive, so a red bar
# under the anomaly index's line (or a blue one over it) is explained where it is drawn.
TESTS_CAPTION = (
    "Each test of the verdict: its per-class statistic (the median over the restarts; the rates "
    "pooled over them) and the threshold above which it fires; red: the classes it fired for. "
    "These decide the verdict."
)
PATTERNS_CAPTION = (
    "Red: the classes the verdict flags, whichever of its tests fired (see the table). The "
    "anomaly index of the first restart (Neural Cleanse's MAD rule, dashed line at its 2) is "
    "descriptive: the verdict's small_mask test judges the median over the restarts against a "
    "calibrated threshold (tests chart). A red bar under the line was flagged by another test "
    "(e.g. noise_blend), a blue bar over it fired no test (e.g. a natural shortcut such as "
    "Bag); each table row says which."
)
HEATMAP_CAPTION = (
    "Colour and numbers: the descriptive anomaly index (not the verdict's rule); boxed cells: "
    "the classes each model's verdict flags, with the test that fired in its table below."
)


# Documented defaults a check is judged against when no gate was asked for (docs/ci.md): the
# zoo's standard-trained models keep 0.00 accuracy under PGD-10 at eps 0.1, its PGD-trained one
# 0.52; their deepest-layer reliable ratios span 0.31-0.90.
ROBUST_REFERENCE = 0.05
RELIABLE_REFERENCE = 0.25
STATUSES = ("pass", "warn", "fail", "inconclusive", "na")


def verdicts(doc: Mapping[str, Any]) -> list[dict[str, str]]:
    """The summary card: per check a status (pass, warn, fail, inconclusive, na), the reason
    in words and what it was judged against (a gate, or a documented reference)."""
    gates = doc.get("gates") or []
    cards = [_backdoor_card(doc, gates), _robustness_card(doc, gates), _knowledge_card(doc, gates)]
    if gates:
        failed = [g["name"] for g in gates if not g["passed"]]
        text = f"{len(gates) - len(failed)}/{len(gates)} passed"
        text += f"; failed: {', '.join(failed)}" if failed else ""
        cards.append(_card("Gates", text, "fail" if failed else "pass", "the requested gates"))
    return cards


def _gate_status(gates: Sequence[Mapping[str, Any]], prefixes: tuple[str, ...]) -> str | None:
    """fail/pass from the gates whose name starts with one of `prefixes`; None if none ran."""
    chosen = [g for g in gates if str(g["name"]).startswith(prefixes)]
    if not chosen:
        return None
    return "pass" if all(g["passed"] for g in chosen) else "fail"


def _backdoor_card(doc: Mapping[str, Any], gates: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    patterns = doc.get("patterns")
    if not patterns:
        return _card("Backdoor", "not analysed", "na", "")
    verdict = patterns.get("backdoor") or {}
    basis = "gate --fail-on backdoor" if _gate_status(gates, ("backdoor",)) else "verdict rules"
    rule = f"{basis} (docs/patterns.md)"
    if verdict.get("outcome") == "inconclusive":
        reasons = verdict.get("inconclusive_reasons") or [verdict.get("reason")]
        reason = "; ".join(r for r in reasons if r) or "the search could not judge every class"
        return _card("Backdoor", f"inconclusive: {reason}", "inconclusive", rule)
    if verdict.get("suspected"):
        return _card("Backdoor", _suspected_text(patterns, verdict), "fail", rule)
    return _card("Backdoor", "no class's pattern looks implanted", "pass", rule)


def _suspected_text(patterns: Mapping[str, Any], verdict: Mapping[str, Any]) -> str:
    """'suspected: target class 3 (Dress), by <tests>' from the verdict's evidence."""
    names = {c["class"]: c.get("name", c["class"]) for c in patterns.get("classes", [])}
    targets = ", ".join(f"{c} ({names.get(c, '?')})" for c in verdict.get("classes", []))
    fired = sorted({name for found in (verdict.get("evidence") or {}).values() for name in found})
    return f"suspected: target class {targets}" + (f", by {', '.join(fired)}" if fired else "")


def _robustness_card(doc: Mapping[str, Any], gates: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    robustness = doc.get("robustness")
    if not robustness:
        return _card("Robustness", "not analysed", "na", "")
    robust = robustness["robust_accuracy"]
    text = (
        f"accuracy {robustness['clean_accuracy']:.2f} clean, {robust:.2f} under PGD "
        f"(eps {robustness.get('eps')}, {robustness.get('steps')} steps)"
    )
    status = _gate_status(gates, ("min-robust-accuracy",))
    if status is not None:
        return _card("Robustness", text, status, "gate --min-robust-accuracy")
    status = "pass" if robust >= ROBUST_REFERENCE else "warn"
    reference = (
        f"reference: robust accuracy >= {ROBUST_REFERENCE:g} (zoo at eps 0.1: 0.00 standard "
        f"training, 0.52 PGD training)"
    )
    return _card("Robustness", text, status, reference)


def _knowledge_card(doc: Mapping[str, Any], gates: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    layers = (doc.get("knowledge") or {}).get("layers") or []
    if not layers:
        return _card("Knowledge", "not analysed", "na", "")
    last = layers[-1]
    ratio = last.get("reliable_ratio")
    shown = "undefined" if ratio is None else f"{ratio:.2f}"
    text = (
        f"{last.get('knowledge_points', 0):.1f} knowledge points per image in the deepest "
        f"analysed layer, reliable ratio {shown}"
    )
    status = _gate_status(gates, ("min-reliable-ratio", "max-drop"))
    if status is not None:
        return _card("Knowledge", text, status, "gates --min-reliable-ratio / --max-drop")
    status = "pass" if ratio is not None and ratio >= RELIABLE_REFERENCE else "warn"
    reference = (
        f"reference: deepest-layer reliable ratio >= {RELIABLE_REFERENCE:g} "
        f"(zoo clean models 0.31-0.90)"
    )
    return _card("Knowledge", text, status, reference)


def _card(label: str, text: str, status: str, basis: str) -> dict[str, str]:
    return {"label": label, "text": text, "status": status, "basis": basis}


def _run_rows(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The tool, data and settings rows of one model's appendix (what compared runs share)."""
    return flatten(
        {"tool": doc.get("tool"), "data": doc.get("data"), "settings": doc.get("settings")}
    )


def _differences(doc: Mapping[str, Any], shared: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The rows of `doc`'s run that are not the same as in the shared (first model's) rows."""
    reference = dict(shared)
    return [(key, value) for key, value in _run_rows(doc) if reference.get(key) != value]


def appendix(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every setting, seed and identifier as (key, value) rows; bulky per-item lists are left to
    the sections that show them."""
    rows = flatten({"tool": doc.get("tool"), "model": doc.get("model")}, skip={"layers"})
    rows += flatten({"data": doc.get("data"), "settings": doc.get("settings")})
    for section in SECTIONS:
        rows += flatten({section: doc.get(section)}, skip={"layers", "classes"})
    return rows


def flatten(
    value: Any, prefix: str = "", skip: set[str] = frozenset(), max_items: int = 16
) -> list[tuple[str, str]]:
    """Scalar leaves of nested dicts as dotted keys; short scalar lists joined, long ones counted."""
    if isinstance(value, Mapping):
        rows = []
        for key, item in value.items():
            if key in skip:
                continue
            rows += flatten(item, f"{prefix}.{key}" if prefix else str(key), skip, max_items)
        return rows
    if isinstance(value, (list, tuple)):
        if (
            all(not isinstance(v, (Mapping, list, tuple)) for v in value)
            and len(value) <= max_items
        ):
            return [(prefix, ", ".join(_scalar(v) for v in value) or "[]")]
        return [(prefix, f"[{len(value)} items]")]
    return [(prefix, _scalar(value))]


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "none" if value is None else str(value)
