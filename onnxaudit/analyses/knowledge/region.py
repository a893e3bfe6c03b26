"""Regional embedding h^(r) = Lambda f^(r), one Lambda shared by all regions and samples.

Loss (paper 1, Sec. 3.2): lambda_kl KL[P(X2 | X1) || Q_Lambda(X2 | X1)] - lambda_align
sum_r w_r cos(h^(r), g), where Q_Lambda pools, with the fitted w fixed and the matches r' cached,
vMF experts q_i(j | r) = softmax_j(kappa(||h_i^(r)||) cos(h_i^(r), h_j^(r'))). The alignment to
the sample embedding g puts every layer (and other models) into g's coordinate system.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from onnxaudit.analyses.knowledge.importance import ImportanceWeights
from onnxaudit.analyses.knowledge.radial import (
    LinearKappa,
    kl_rows,
    scaled_backward,
    strength,
    unit,
    unit_backward,
)


class RegionEmbedding:
    """Fit Lambda (dim, K); `transform` returns h in the sample embedding's strength units.

    Deviations from the reference (random init; 20 epochs of single-sample SGD steps, 100 fresh partners each):
    L-BFGS on the full deterministic objective (mean over samples) with the importance
    estimator's fixed partner sets and cached matches, started from the w-weighted least-squares
    map of regions onto g: the KL term is rotation invariant, so from a random start the weak
    alignment term can leave a class's regions along another class's direction. After fitting, h is rescaled so that its mean strength equals the
    mean sample strength ||g|| (the authors divided by the mean region strength). Tying the unit
    to g keeps the model's confidence in the scale: an untrained checkpoint, whose P(Y|X) is
    nearly flat, has a weak g and hence weak regions and no knowledge points, instead of a
    mean-1 cloud that crosses tau by chance. The scale is fixed at fit time, so attacked or
    other inputs are measured in the same units.
    """

    def __init__(
        self,
        dim: int = 3,
        kappa: LinearKappa | None = None,
        lambda_kl: float = 1.0,
        lambda_align: float = 0.1,
        weight_decay: float = 5e-4,
        max_iter: int = 40,
        regions_per_sample: int = 48,
    ) -> None:
        self.dim = dim
        self.kappa = kappa or LinearKappa(1.0, 1000.0)
        self.lambda_kl = lambda_kl
        self.lambda_align = lambda_align
        self.weight_decay = weight_decay
        self.max_iter = max_iter
        self.regions_per_sample = regions_per_sample

    def fit(
        self, regions: np.ndarray, g: np.ndarray, importance: ImportanceWeights
    ) -> RegionEmbedding:
        """regions (N, R, K); g (N, dim) the sample embedding to align to; fitted importance."""
        regions = np.asarray(regions, np.float32)
        k = regions.shape[2]
        self.input_scale_ = float(np.mean(strength(regions))) or 1.0
        args = self._problem(regions, g, importance)
        init = _aligned_init(args[0], np.asarray(g, np.float64), importance.w_)
        res = minimize(
            self._objective,
            init.ravel(),
            args=args,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter},
        )
        self.loss_ = float(res.fun)
        self.n_iter_ = int(res.nit)
        raw = res.x.reshape(self.dim, k) / self.input_scale_
        h = regions @ raw.T.astype(np.float32)
        self.strength_scale_ = float(np.mean(strength(g)) / max(np.mean(strength(h)), 1e-12))
        self.components_ = raw * self.strength_scale_
        return self

    def transform(self, regions: np.ndarray) -> np.ndarray:
        """h = Lambda f for regional features (..., K) -> (..., dim), in sample-strength units."""
        return np.asarray(regions, np.float32) @ self.components_.T.astype(np.float32)

    def loss_and_grad(
        self, lam: np.ndarray, regions: np.ndarray, g: np.ndarray, importance: ImportanceWeights
    ) -> tuple[float, np.ndarray]:
        """The fitted loss at Lambda (dim, K) (on regions / input_scale_) and its gradient."""
        args = self._problem(np.asarray(regions, np.float32), g, importance)
        loss, grad = self._objective(np.asarray(lam, np.float64).ravel(), *args)
        return loss, grad.reshape(lam.shape)

    def _problem(self, regions: np.ndarray, g: np.ndarray, importance: ImportanceWeights):
        """The objective's fixed arguments: inputs, unit g, w, targets and the cached matches."""
        r = regions.shape[1]
        x = regions.astype(np.float64) / self.input_scale_
        selected = np.sort(np.argsort(-importance.w_, axis=1)[:, : self.regions_per_sample], 1)
        matches = np.take_along_axis(importance.matches_, selected[:, None, :], axis=2)
        flat_index = importance.partners_[:, :, None] * r + matches
        g_unit = unit(np.asarray(g, np.float64))
        x_t = np.ascontiguousarray(x.reshape(len(x) * r, -1).T)
        return x, x_t, g_unit, importance.w_, importance.targets_, selected, flat_index

    def _objective(self, flat, x, x_t, g_unit, w, targets, selected, flat_index):
        lam = flat.reshape(self.dim, -1)
        n, r, _ = x.shape
        rows = np.arange(n)[:, None]
        h = x @ lam.T  # (N, R, d)
        norm = strength(h)
        o = h / np.maximum(norm, 1e-12)[..., None]
        s, ds = self.kappa.ratio(norm)
        # Component-major (d, ...) arrays: the partner gathers and sums run on contiguous rows.
        u = np.moveaxis(s[..., None] * h, -1, 0)[:, rows, selected]  # kappa(l) o, (d, N, k)
        w_sel = w[rows, selected]
        w_sel = w_sel / w_sel.sum(1, keepdims=True)
        o_match = np.take(o.reshape(n * r, self.dim).T, flat_index, axis=1)  # (d, N, S, k)
        z = (u[:, :, None, :] * o_match).sum(0)
        log_q = log_softmax(z, axis=1)  # experts q_i(j | r) over partners j
        log_pool = log_softmax(np.matmul(log_q, w_sel[:, :, None])[..., 0], axis=1)
        cos = np.einsum("nrd,nd->nr", o, g_unit)
        loss = (
            self.lambda_kl * kl_rows(targets, log_pool).mean()
            - self.lambda_align * (w * cos).sum(1).mean()
            + 0.5 * self.weight_decay * np.sum(lam**2)
        )
        err = (self.lambda_kl / n) * (np.exp(log_pool) - targets)  # dKL/dz = w_r err_j
        grad_u = np.zeros_like(h)
        grad_u[rows, selected] = np.moveaxis(
            w_sel * np.matmul(err[None, :, None, :], o_match)[:, :, 0], 0, -1
        )
        grad_z = err[:, :, None] * w_sel[:, None, :]
        grad_o = np.stack(
            [np.bincount(flat_index.ravel(), (grad_z * u_d[:, None]).ravel(), n * r) for u_d in u],
            axis=1,
        ).reshape(n, r, self.dim)
        grad_o -= (self.lambda_align / n) * w[..., None] * g_unit[:, None, :]
        grad_h = scaled_backward(h, grad_u, s, ds) + unit_backward(o, norm, grad_o)
        grad = (x_t @ grad_h.reshape(n * r, self.dim)).T + self.weight_decay * lam
        return float(loss), grad.ravel()


def _aligned_init(x: np.ndarray, g: np.ndarray, w: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """argmin_L sum_ir w_ir ||L x_ir - g_i||^2 + ridge-scaled ||L||^2: (dim, K)."""
    n, r, k = x.shape
    flat = x.reshape(n * r, k)
    weights = w.reshape(-1, 1)
    gram = flat.T @ (weights * flat)
    rhs = flat.T @ (weights * np.repeat(g, r, axis=0))
    gram[np.diag_indices(k)] += ridge * np.trace(gram) / k + 1e-12
    return np.linalg.solve(gram, rhs).T
