"""Per-sample regional (w) and channel (v) importance: the mixture model of paper 1, Sec. 3.2.

The DNN's sample-to-sample similarity P(x_j | x_i) = softmax_j(kappa_p p_i . p_j) over partners j
(p = P(Y|x) / ||P(Y|x)||) is explained by a product of per-region experts
q_i(j | r) = softmax_j(kappa_m sum_k v_k fbar_i^(k,r) fbar_j^(k,r'_ij(r))), pooled as
Q(j | i) ~ prod_r q_i(j | r)^(w_r), where r'_ij(r) is the v-weighted best match of region r in x_j.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from onnxaudit.analyses.knowledge.radial import EPS, kl_rows, unit


def sample_partners(n: int, partners: int, rng: np.random.Generator) -> np.ndarray:
    """(n, S) distinct partner indices per sample, never the sample itself."""
    scores = rng.random((n, n))
    np.fill_diagonal(scores, np.inf)
    return np.argsort(scores, axis=1)[:, : min(partners, n - 1)]


def similarity_targets(probs: np.ndarray, partners: np.ndarray, kappa_p: float) -> np.ndarray:
    """P(X2 = x_j | X1 = x_i) over each sample's partners: softmax_j(kappa_p cos(P_i, P_j))."""
    p = unit(np.asarray(probs, np.float64))
    cos = np.einsum("nc,nsc->ns", p, p[partners])
    return np.exp(log_softmax(kappa_p * cos, axis=1))


def match_regions(
    fbar: np.ndarray, partners: np.ndarray, v: np.ndarray, regions: np.ndarray | None = None
) -> np.ndarray:
    """r'_ij(r) = argmax_r' sum_k v_ik fbar_i^(k,r) fbar_j^(k,r'): (N, S, R') region indices.

    `regions` (N, R') restricts the query regions r (default: all). One (R', K) x (K, S R)
    product per sample: a single large GEMM is several times faster than S small ones.
    """
    n, r, k = fbar.shape
    s = partners.shape[1]
    queries = np.broadcast_to(np.arange(r), (n, r)) if regions is None else regions
    out = np.empty((n, s, queries.shape[1]), np.int32)
    for i in range(n):
        sim = (fbar[i, queries[i]] * v[i]) @ fbar[partners[i]].reshape(s * r, k).T
        out[i] = sim.reshape(-1, s, r).argmax(-1).T
    return out


class ImportanceWeights:
    """Fit w_i (over regions) and v_i (over channels) per sample to mimic the DNN's similarities.

    Faithful to the reference optimiser (20 projected SGD steps, lr 0.05, momentum 0.9,
    wd 5e-4, abs + L1 projection before each step, uniform init), vectorised over samples.
    Deviations, for speed: a fixed seeded partner set per sample (reference: 100 fresh random
    partners per step), and matches r' computed with uniform v before the steps and recomputed
    once with the fitted v for each sample's `rematch_top` highest-w regions, the ones the
    regional embedding's similarity term uses (reference: all regions, every step); kappa_m scales with the channel
    count K as kappa_match * K, which is the reference's 1000 at K = 512.
    """

    def __init__(
        self,
        partners: int = 16,
        kappa_p: float = 5.0,
        kappa_match: float = 1000.0 / 512.0,
        steps: int = 20,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        batch_size: int = 64,
        rematch_top: int = 48,
        seed: int = 0,
    ) -> None:
        self.partners = partners
        self.kappa_p = kappa_p
        self.kappa_match = kappa_match
        self.steps = steps
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.rematch_top = rematch_top
        self.seed = seed

    def fit(self, regions: np.ndarray, probs: np.ndarray) -> ImportanceWeights:
        """regions (N, R, K) regional features; probs (N, C) DNN probabilities P(Y | x)."""
        fbar = unit(np.asarray(regions, np.float32))
        n, r, k = fbar.shape
        rng = np.random.default_rng(self.seed)
        self.partners_ = sample_partners(n, self.partners, rng)
        self.targets_ = similarity_targets(probs, self.partners_, self.kappa_p)
        self.kappa_m_ = self.kappa_match * k
        uniform = np.full((n, k), 1.0 / k, np.float32)
        matches = match_regions(fbar, self.partners_, uniform)
        self.w_ = np.full((n, r), 1.0 / r)
        self.v_ = np.full((n, k), 1.0 / k)
        losses = np.empty(n)
        for start in range(0, n, self.batch_size):
            idx = slice(start, start + self.batch_size)
            products = expert_products(fbar, self.partners_[idx], matches[idx], idx)
            self.w_[idx], self.v_[idx], losses[idx] = self._fit_batch(products, self.targets_[idx])
        self.loss_ = float(losses.mean())
        top = np.argsort(-self.w_, axis=1)[:, : self.rematch_top]
        rematched = match_regions(fbar, self.partners_, self.v_.astype(np.float32), top)
        np.put_along_axis(matches, top[:, None, :], rematched, axis=2)
        self.matches_ = matches
        return self

    def loss_and_grad(
        self, w: np.ndarray, v: np.ndarray, products: np.ndarray, targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-sample KL[P || Q] and its gradients w.r.t. w (B, R) and v (B, K), matches fixed.

        `products` (B, S, R, K) holds fbar_i^(k,r) fbar_j^(k,r'_ij(r)), so expert scores are
        one batched mat-vec with v.
        """
        b, s, r, k = products.shape
        flat = products.reshape(b, s * r, k)
        score = np.matmul(flat, v[:, :, None].astype(flat.dtype)).reshape(b, s, r)
        log_q = log_softmax(self.kappa_m_ * score.astype(np.float64), axis=1)  # experts q_i(j|r)
        log_pool = log_softmax(np.matmul(log_q, w[:, :, None])[..., 0], axis=1)
        loss = kl_rows(targets, log_pool)
        err = np.exp(log_pool) - targets  # sums to 0 over j, so dKL/dscore = kappa_m w_r err_j
        grad_w = np.matmul(err[:, None, :], log_q)[:, 0]
        grad_score = (self.kappa_m_ * w[:, None, :] * err[:, :, None]).astype(flat.dtype)
        grad_v = np.matmul(grad_score.reshape(b, 1, s * r), flat)[:, 0].astype(np.float64)
        return loss, grad_w, grad_v

    def _fit_batch(self, products: np.ndarray, targets: np.ndarray):
        b, _, r, k = products.shape
        w, v = np.full((b, r), 1.0 / r), np.full((b, k), 1.0 / k)
        buf_w, buf_v = np.zeros_like(w), np.zeros_like(v)
        for _ in range(self.steps):
            w, v = _simplex(w), _simplex(v)
            _, grad_w, grad_v = self.loss_and_grad(w, v, products, targets)
            buf_w = self.momentum * buf_w + grad_w + self.weight_decay * w
            buf_v = self.momentum * buf_v + grad_v + self.weight_decay * v
            w, v = w - self.lr * buf_w, v - self.lr * buf_v
        w, v = _simplex(w), _simplex(v)
        loss, _, _ = self.loss_and_grad(w, v, products, targets)
        return w, v, loss


def _simplex(x: np.ndarray) -> np.ndarray:
    """The reference's projection: absolute values, L1-normalised per row."""
    a = np.abs(x)
    return a / np.maximum(a.sum(1, keepdims=True), EPS)


def expert_products(
    fbar: np.ndarray, partners: np.ndarray, matches: np.ndarray, rows: slice
) -> np.ndarray:
    """fbar_i^(k,r) * fbar_j^(k,r'_ij(r)) for the samples in `rows`: (B, S, R, K)."""
    return fbar[rows][:, None] * fbar[partners[:, :, None], matches]
