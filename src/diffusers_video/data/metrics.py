"""Statistics for benchmarks: binomial confidence intervals, the Fréchet distance between feature sets, and PSNR."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    Args:
        successes (`int`): number of successes, `0 <= successes <= trials`.
        trials (`int`): number of trials; 0 gives the uninformative interval (0, 1).
        z (`float`, defaults to 1.96): normal quantile.

    Returns:
        `tuple[float, float]`: lower and upper bound.
    """
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"Need 0 <= successes <= trials, but got successes={successes!r}, trials={trials!r}.")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z**2 / trials
    center = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    low = 0.0 if successes == 0 else max(0.0, center - half)  # exact at the ends, free of rounding error
    high = 1.0 if successes == trials else min(1.0, center + half)
    return low, high


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the formula of FID and FVD).

    `|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)`. Both square roots are of symmetric PSD
    matrices and are taken by eigendecomposition, so the result is real and needs no scipy.

    Args:
        features_a (`np.ndarray`): `(num_a, dim)` with `num_a >= 2`.
        features_b (`np.ndarray`): `(num_b, dim)` with `num_b >= 2`.

    Returns:
        `float`: the distance (>= 0).
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    for name, f in (("features_a", a), ("features_b", b)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"`{name}` must have shape (num_samples >= 2, dim), but has shape {f.shape}.")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Feature dimensions differ: {a.shape[1]} and {b.shape[1]}.")
    mean_term = float(np.sum((a.mean(0) - b.mean(0)) ** 2))
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _sqrtm_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0.0, None)).sum()
    return max(0.0, mean_term + float(np.trace(cov_a) + np.trace(cov_b) - 2 * cross))


def psnr(a, b) -> float:
    """PSNR in dB of two images or videos with values in [0, 1] (compared in float64); infinite when they are equal."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


__all__ = ["Z95", "frechet_distance", "psnr", "wilson_interval"]
