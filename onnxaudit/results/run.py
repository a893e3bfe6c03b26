"""What a run returns: the analysed inputs, the settings and each analysis's result object.

`to_dict()` is exactly the result.json (result@1) or compare.json (compare@1) that the CLI writes
for the same settings; the report draws its image-level figures from the result objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from onnxaudit.data import Dataset
from onnxaudit.features.runtime import providers_for
from onnxaudit.model import PreparedModel
from onnxaudit.results.schema import build_comparison, build_result, model_section
from onnxaudit.seeds import describe
from onnxaudit.settings import Settings


class AnalysisResult(Protocol):
    """Any analysis's result: plain data with a JSON form."""

    def to_dict(self) -> dict: ...


@dataclass
class AuditResult:
    """One model audited on one data subset."""

    model: PreparedModel
    data: Dataset  # the subset that was analysed
    settings: Settings
    analyses: dict[str, AnalysisResult] = field(default_factory=dict)
    display_path: str | None = None  # the model path recorded (e.g. repo-relative in showcases)
    warnings: list[str] = field(default_factory=list)  # about the inputs, e.g. label order

    @property
    def name(self) -> str:
        return Path(self.display_path or self.model.path).stem

    def to_dict(self) -> dict:
        settings = self.settings.to_dict()
        settings["seeds"] = describe(self.settings.seed)
        settings["provider"] = providers_for(self.settings.device)[0]  # what `auto` became
        doc = build_result(
            model_section(self.model, self.display_path),
            self.data.identity(self.settings.per_class, self.settings.seed),
            settings=settings,
            **self.analyses,
        )
        doc["warnings"] = list(self.warnings)
        return doc


@dataclass
class CompareResult:
    """Several models audited on the same images, the first being the reference."""

    runs: list[AuditResult]
    comparison: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return build_comparison([run.to_dict() for run in self.runs], self.comparison)
