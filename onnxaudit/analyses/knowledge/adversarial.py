"""Knowledge points under attack: how regional features move along an untargeted PGD path."""

from __future__ import annotations

import numpy as np

from onnxaudit.analyses.knowledge.points import knowledge_points
from onnxaudit.analyses.knowledge.radial import (
    LinearKappa,
    one_minus_cos,
    radial_posterior,
    strength,
    unit,
)
from onnxaudit.analyses.knowledge.results import (
    AdversarialLayer,
    AdversarialResult,
    KnowledgeResult,
)
from onnxaudit.model import PreparedModel
from onnxaudit.progress import ProgressFn, silent
from onnxaudit.seeds import child

ATTACK_TYPES = ("1: original -> adversarial", "2: via origin", "3: new", "4: vanished")
ATTACK_STREAM = 1  # child 1 of the knowledge stream: the attack's random start (0: the fits)


def adversarial_analysis(
    pm: PreparedModel,
    result: KnowledgeResult,
    device: str = "auto",
    progress: ProgressFn = silent,
    threads: int | None = None,
    max_memory: int | None = None,
) -> AdversarialResult:
    """Untargeted L-inf PGD on the analysed images; regional features recorded at every step
    and projected with the clean fit's Lambda (same coordinates and strength units)."""
    from onnxaudit.analyses.robustness import pgd
    from onnxaudit.features.extract import FeatureExtractor
    from onnxaudit.features.gradients import CrossEntropy, InputGradient

    settings, fitted = result.settings, result.fitted
    names = [layer.name for layer in result.layers]
    fx = FeatureExtractor(pm, names, grid=settings.grid, device=device, threads=threads)
    track: dict[str, list[np.ndarray]] = {name: [] for name in names}
    logits: list[np.ndarray] = []

    def record(step: int, x_adv: np.ndarray) -> None:
        progress("knowledge: PGD", step, settings.attack_steps)
        feats = fx.transform(x_adv)
        logits.append(feats["logits"])
        for name in names:
            track[name].append(fitted.regions[name].transform(feats[name]))

    grad = InputGradient(pm.proto, CrossEntropy(), device, threads, max_memory=max_memory)
    pgd(
        grad,
        result.images,
        result.labels,
        eps=settings.attack_eps,
        steps=settings.attack_steps,
        seed=child(result.seed, ATTACK_STREAM),
        callback=record,
    )
    adv_pred = logits[-1].argmax(1)
    success = (result.predictions == result.labels) & (adv_pred != result.labels)
    mu, kappa = fitted.sample.mu_, settings.sample_kappa
    out = []
    for layer in result.layers:
        h0 = layer.embedding  # clean; the attack's iterate 0 is its random start
        path = np.stack([h0, *track[layer.name]])  # (T + 2, N, R, d)
        h1 = path[-1]
        after_points, _ = knowledge_points(h1, mu, kappa, adv_pred, settings.tau)
        out.append(
            AdversarialLayer(
                name=layer.name,
                delta_orientation=float(np.mean(one_minus_cos(h0, h1))),
                delta_strength=float(np.mean(np.abs(strength(h1) - strength(h0)))),
                attack_types=attack_types(
                    h0[success],
                    path[:, success],
                    mu,
                    kappa,
                    result.labels[success],
                    adv_pred[success],
                ),
                knowledge_points_after=float(after_points.sum(1).mean()),
            )
        )
    return AdversarialResult(
        eps=settings.attack_eps,
        steps=settings.attack_steps,
        success_rate=float(success.mean()),
        layers=out,
    )


def attack_types(
    h0: np.ndarray,
    path: np.ndarray,
    mu: np.ndarray,
    kappa: LinearKappa,
    original: np.ndarray,
    adversarial: np.ndarray,
) -> dict[str, int]:
    """Counts of the authors' four regional behaviours (their thresholds, in strength units).

    h0 (n, R, d) clean features; path (T+1, n, R, d) along the attack; classes per sample.
    """
    rows = np.arange(len(h0))[:, None]
    l0, l_end, l_min = strength(h0), strength(path[-1]), strength(path).min(0)
    was_original = (
        (unit(h0) @ unit(mu).T)[rows, np.arange(h0.shape[1]), original[:, None]] > 0.9
    ) & (l0 > 1.0)
    post = radial_posterior(path[-1], mu, kappa)
    now_adversarial = np.take_along_axis(post, adversarial[:, None, None], axis=2)[..., 0] > 0.5
    counts = (
        was_original & (l_min > 1.2) & now_adversarial,
        was_original & (l_min < 1.0) & now_adversarial,
        (l0 < 0.5) & now_adversarial,
        was_original & (l_end < 1.0),
    )
    return {name: int(c.sum()) for name, c in zip(ATTACK_TYPES, counts, strict=True)}
