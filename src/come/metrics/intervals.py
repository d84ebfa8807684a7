"""95% confidence intervals that hold at small n, each reported with its number of samples.

Means (PSNR, SSIM, track errors) take Student's t interval (scipy); one sample has no interval
(``ci95`` None), where a normal approximation would report a zero-width one. Proportions (recall:
cards drawn right out of cards scored) take the Wilson score interval, which stays inside [0, 1]
at any n (scipy's ``binomtest``). Two methods' successes on the same trials are compared pair by pair
(:func:`paired_successes`: the exact sign test on the trials where they differ).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from ..errors import InputError


def mean_ci95(values) -> dict:
    """Mean, Student's t 95% interval (None for one sample) and the number of samples ``n``."""
    v = np.asarray(values, float)
    m = float(v.mean())
    if len(v) < 2:
        return {"mean": m, "ci95": None, "n": len(v)}
    half = float(stats.t.ppf(0.975, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return {"mean": m, "ci95": [m - half, m + half], "n": len(v)}


def proportion_ci95(successes: int, trials: int) -> dict:
    """Share of successes, its Wilson 95% interval and the number of trials ``n``."""
    if trials < 1 or not 0 <= successes <= trials:
        raise InputError(f"{successes} successes out of {trials} trials")
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(0.95, method="wilson")
    return {"mean": successes / trials, "ci95": [float(ci.low), float(ci.high)], "n": int(trials)}


def paired_successes(ours, theirs) -> dict:
    """Two methods' successes (bools) on the same trials: the trials only ``ours`` succeeded on (``ahead``), only
    ``theirs`` (``behind``), and the two-sided exact sign test's p-value on those (1 when they never differ)."""
    ours, theirs = np.asarray(ours, bool), np.asarray(theirs, bool)
    if ours.shape != theirs.shape:
        raise InputError(f"paired successes need the same trials, got {len(ours)} and {len(theirs)}")
    ahead, behind = int((ours & ~theirs).sum()), int((theirs & ~ours).sum())
    p = stats.binomtest(ahead, ahead + behind).pvalue if ahead + behind else 1.0
    return {"ahead": ahead, "behind": behind, "p": float(p)}


def interval_text(s: dict, digits: int = 2) -> str:
    """``[lo, hi] n=N``, or ``n=1, no interval``."""
    if s["ci95"] is None:
        return f"n={s['n']}, no interval"
    lo, hi = s["ci95"]
    return f"[{lo:.{digits}f}, {hi:.{digits}f}] n={s['n']}"


def error_bars(entries: list[dict]) -> list[list[float]]:
    """Lower and upper error-bar lengths of interval dicts for matplotlib (0 where there is none)."""
    lows = [s["mean"] - s["ci95"][0] if s["ci95"] else 0.0 for s in entries]
    highs = [s["ci95"][1] - s["mean"] if s["ci95"] else 0.0 for s in entries]
    return [lows, highs]
