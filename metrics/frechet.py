"""Fréchet distance between two feature sets, in float64.

``FD = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})``.

The trace term uses the symmetric form of TF-GAN's ``trace_sqrt_product``:
``Tr((S1 S2)^{1/2}) = Tr((A S2 A)^{1/2})`` with ``A = S1^{1/2}`` (``S1 S2 = A (A S2)`` has the
eigenvalues of ``A S2 A``). Both square roots come from ``numpy.linalg.eigh`` of symmetric
PSD matrices, with rounding-negative eigenvalues clipped to 0, so rank-deficient covariances
(fewer samples than dimensions) stay finite and no deprecated ``scipy.linalg.sqrtm(disp=)``
is needed.
"""

from __future__ import annotations

import numpy as np


def feature_stats(feats: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``ddof=1``: unbiased, as TF-GAN) of ``feats [N, D]`` in float64.

    Raises ``ValueError`` for fewer than 2 samples or non-finite features.
    """
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"Fréchet distance needs at least 2 samples per set, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf")
    mu = x.mean(axis=0)
    xc = x - mu
    cov = xc.T @ xc / (x.shape[0] - ddof)
    return mu, cov


def _sym_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """``Tr((s1 s2)^{1/2})`` for symmetric PSD ``s1``, ``s2``."""
    a = _sym_sqrt(s1)
    m = a @ s2 @ a
    w = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance_from_stats(
    mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray
) -> float:
    """Fréchet distance of two Gaussians; clipped at 0 against rounding."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(
            f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, cov {s1.shape} vs {s2.shape}"
        )
    diff = mu1 - mu2
    fd = float(diff @ diff) + float(np.trace(s1) + np.trace(s2)) - 2.0 * trace_sqrt_product(s1, s2)
    if not np.isfinite(fd):
        raise ValueError("Fréchet distance is not finite")
    return max(fd, 0.0)


def frechet_distance(feats1: np.ndarray, feats2: np.ndarray, ddof: int = 1) -> float:
    """Fréchet distance between feature sets ``[N1, D]`` and ``[N2, D]`` (each N >= 2)."""
    mu1, s1 = feature_stats(feats1, ddof)
    mu2, s2 = feature_stats(feats2, ddof)
    return frechet_distance_from_stats(mu1, s1, mu2, s2)
