"""Sample embedding g = M f (paper 1, radial distribution of sample features).

M is fitted by minimising sum_i KL[P(Y | x_i) || Q_M(Y | x_i)] where Q_M is the radial posterior
whose class parameters are the closed-form (EM-like) functions of the current embedding:
pi_y = mean_i P(y | x_i) and mu_y = normalise(sum_i P(y | x_i) kappa(l_i) o_i).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.decomposition import PCA

from onnxaudit.analyses.knowledge.radial import (
    EPS,
    LinearKappa,
    entropy,
    kl_rows,
    radial_posterior,
    scaled_backward,
    strength,
)


class SampleEmbedding:
    """Project sample features to `dim` dimensions so the radial posterior mimics the DNN.

    Deviation from the reference (SGD, 2000 full-batch steps, gradient with the norm detached):
    L-BFGS on the exact gradient of the same objective, which converges in a few hundred steps.
    Features are divided by their mean norm (the reference divided by a fixed 40).
    """

    def __init__(
        self,
        dim: int = 3,
        kappa: LinearKappa | None = None,
        weight_decay: float = 5e-4,
        max_iter: int = 200,
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.kappa = kappa or LinearKappa(3.0, 10.0)
        self.weight_decay = weight_decay
        self.max_iter = max_iter
        self.init_std = init_std
        self.seed = seed

    def fit(
        self, features: np.ndarray, probs: np.ndarray, init: np.ndarray | None = None
    ) -> SampleEmbedding:
        """Fit M on features (N, D) and DNN probabilities (N, C); `init` (dim, D) warm-starts M."""
        features = np.asarray(features, np.float64).reshape(len(features), -1)
        probs = np.asarray(probs, np.float64)
        self.scale_ = float(np.mean(strength(features))) or 1.0
        x = features / self.scale_
        self.pi_ = probs.mean(0)
        if init is None:
            rng = np.random.default_rng(self.seed)
            init = rng.normal(0.0, self.init_std, (self.dim, x.shape[1]))
        res = minimize(
            self._objective,
            np.asarray(init, np.float64).ravel(),
            args=(x, probs),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter},
        )
        self.components_ = res.x.reshape(self.dim, -1)
        self.loss_ = float(res.fun)
        self.n_iter_ = int(res.nit)
        self.mu_ = self._class_directions(self.transform(features), probs)
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """g = M (f / scale): the embedding (N, dim)."""
        x = np.asarray(features, np.float64).reshape(len(features), -1) / self.scale_
        return x @ self.components_.T

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Q_M(y | x): the radial posterior of the fitted embedding."""
        return radial_posterior(self.transform(features), self.mu_, self.kappa, np.log(self.pi_))

    def rotate(self, rotation: np.ndarray) -> SampleEmbedding:
        """Apply an orthogonal map to the embedding space (g -> R g), e.g. after Procrustes."""
        self.components_ = rotation @ self.components_
        self.mu_ = self.mu_ @ rotation.T
        return self

    def _class_directions(self, g: np.ndarray, probs: np.ndarray) -> np.ndarray:
        s, _ = self.kappa.ratio(strength(g))
        m = probs.T @ (s[:, None] * g)
        return m / np.maximum(strength(m), EPS)[:, None]

    def _objective(self, flat: np.ndarray, x: np.ndarray, probs: np.ndarray):
        m_mat = flat.reshape(self.dim, -1)
        g = x @ m_mat.T
        s, ds = self.kappa.ratio(strength(g))
        u = s[:, None] * g  # kappa(l) o
        m = probs.T @ u
        m_norm = np.maximum(strength(m), EPS)
        mu = m / m_norm[:, None]
        log_q = log_softmax(u @ mu.T + np.log(np.maximum(self.pi_, EPS)), axis=1)
        loss = kl_rows(probs, log_q).sum() + 0.5 * self.weight_decay * np.sum(m_mat**2)
        err = np.exp(log_q) - probs  # dKL / dlogits
        grad_mu = err.T @ u
        grad_m = (grad_mu - (mu * grad_mu).sum(1, keepdims=True) * mu) / m_norm[:, None]
        grad_u = err @ mu + probs @ grad_m
        grad_g = scaled_backward(g, grad_u, s, ds)
        grad = grad_g.T @ x + self.weight_decay * m_mat
        return loss, grad.ravel()


def strength_uncertainty_corr(embedding: np.ndarray, probs: np.ndarray) -> float:
    """Pearson r between ||g|| and the entropy of P(Y | x): more negative is better."""
    return float(np.corrcoef(strength(embedding), entropy(probs))[0, 1])


def pca_embedding(features: np.ndarray, dim: int = 3) -> np.ndarray:
    """The PCA baseline of the authors' table, as a `dim`-D embedding."""
    features = np.asarray(features, np.float64).reshape(len(features), -1)
    return PCA(n_components=dim, svd_solver="full").fit_transform(features)
