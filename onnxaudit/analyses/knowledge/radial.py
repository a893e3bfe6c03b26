"""The radial (vMF-mixture) posterior shared by sample and regional embeddings.

A d-dim embedding e has strength l = ||e|| and orientation o = e / l. Given class c it follows
vMF(o | mu_c, kappa(l)); with p(l | y) equal for all classes the posterior is
Q(y | e) = softmax_y(kappa(l) mu_y . o + log pi_y), which every estimator here uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import log_softmax, xlogy

EPS = 1e-12


@dataclass(frozen=True)
class LinearKappa:
    """kappa(l) = min(slope * l, kappa_max): a monotone concentration for the radial posterior.

    The authors' kappa tables are unpublished. If g | y ~ N(rho mu_y, sigma^2 I), the orientation
    given strength l is exactly vMF(mu_y, rho l / sigma^2) and p(l | y) is class-free, so a linear
    kappa is the principled choice; the clip bounds the posterior's sharpness as the tables did.
    """

    slope: float = 3.0
    kappa_max: float = 10.0

    def __call__(self, strength: np.ndarray) -> np.ndarray:
        return np.minimum(self.slope * strength, self.kappa_max)

    def ratio(self, strength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """s(l) = kappa(l) / l and ds/dl, so that kappa(l) o = s(l) e."""
        norm = np.maximum(strength, EPS)
        clipped = self.slope * norm > self.kappa_max
        s = np.where(clipped, self.kappa_max / norm, self.slope)
        ds = np.where(clipped, -self.kappa_max / norm**2, 0.0)
        return s, ds

    def to_dict(self) -> dict:
        return {"form": "min(slope * strength, kappa_max)", **asdict(self)}


def strength(e: np.ndarray) -> np.ndarray:
    return np.linalg.norm(e, axis=-1)


def unit(e: np.ndarray) -> np.ndarray:
    return e / np.maximum(strength(e), EPS)[..., None]


def one_minus_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cos(a, b) over the pairs where both are non-zero (flat); orientation is otherwise
    undefined (e.g. a region whose features are all zero after a ReLU)."""
    valid = (strength(a) > EPS) & (strength(b) > EPS)
    return 1.0 - (unit(a[valid]) * unit(b[valid])).sum(-1)


def target_probs(logits: np.ndarray, temperature: float = 4.0) -> np.ndarray:
    """P(Y | X) = softmax(logits / T): the authors' softened DNN output (T = 4)."""
    return np.exp(log_softmax(np.asarray(logits, np.float64) / temperature, axis=-1))


def entropy(p: np.ndarray) -> np.ndarray:
    return -xlogy(p, p).sum(axis=-1)


def kl_rows(p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL[p || q] along the last axis, with 0 log 0 = 0."""
    return (xlogy(p, p) - p * log_q).sum(axis=-1)


def radial_logits(
    e: np.ndarray, mu: np.ndarray, kappa: LinearKappa, log_prior: np.ndarray | None = None
) -> np.ndarray:
    """kappa(||e||) cos(e, mu_c) (+ log pi_c) for every class c: shape e.shape[:-1] + (C,)."""
    z = kappa(strength(e))[..., None] * (unit(e) @ unit(mu).T)
    return z if log_prior is None else z + log_prior


def radial_posterior(
    e: np.ndarray, mu: np.ndarray, kappa: LinearKappa, log_prior: np.ndarray | None = None
) -> np.ndarray:
    """p(y = c | e) of the radial distribution (no prior for regional features, as the authors)."""
    return np.exp(log_softmax(radial_logits(e, mu, kappa, log_prior), axis=-1))


def scaled_backward(e: np.ndarray, grad_u: np.ndarray, s: np.ndarray, ds: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. e of a loss through u = s(||e||) e, given dL/du."""
    norm = np.maximum(strength(e), EPS)
    along = (e * grad_u).sum(-1) * ds / norm
    return s[..., None] * grad_u + along[..., None] * e


def unit_backward(o: np.ndarray, norm: np.ndarray, grad_o: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. e of a loss through o = e / ||e||, given dL/do (norm = ||e||)."""
    radial = (o * grad_o).sum(-1, keepdims=True)
    return (grad_o - radial * o) / np.maximum(norm, EPS)[..., None]
