"""95% intervals over queries: a percentile bootstrap with a fixed seed, paired across columns.

A figure is a mean over queries; its interval comes from resampling the queries with replacement
(``N_RESAMPLES`` times, seeded, so a rerun gives the same interval) and taking the 2.5th and
97.5th percentiles of the resampled means. Columns of one call (metrics of one truth, or
settings scored on the same queries) are resampled together, which is what a paired comparison
of two settings needs: their difference is taken resample by resample.
"""

from __future__ import annotations

import numpy as np

N_RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
# Below ~30 queries a percentile bootstrap's interval is too narrow to trust (it under-covers);
# such a truth is reported, but left out of the ranking of settings.
MIN_QUERIES = 30
_CELLS = 4_000_000  # resample counts held at once (bounds memory at any N)


def bootstrap_means(values, *, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Means of ``values`` over resampled rows.

    Args:
        values: (Q, C) float, one row per query; the rows of every column are resampled together.
        n_resamples: B, number of resamples.
        seed: of the generator: the same values give the same resamples.

    Returns:
        (B, C) float64 column means of each resample ((B, C) of NaN when Q is 0).
    """
    values = np.asarray(values, dtype=np.float64)
    values = values.reshape(len(values), -1)
    q, c = values.shape
    if q == 0:
        return np.full((n_resamples, c), np.nan)
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, c))
    step = max(1, _CELLS // q)
    for start in range(0, n_resamples, step):
        b = min(step, n_resamples - start)
        draws = rng.integers(0, q, size=(b, q)) + (np.arange(b) * q)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * q).reshape(b, q)
        out[start : start + b] = counts @ values / q  # a row drawn twice counts twice
    return out


def percentile_interval(samples, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` per column of (B, C) ``samples``: their central ``level`` percentiles."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(np.asarray(samples, dtype=np.float64), [tail, 100 - tail], axis=0)
    return low, high
