"""Detection and localisation metrics: AUROC, ROC, AP, F1-max, exact AUPRO, thresholds from normal data.

numpy arrays or torch tensors in, Python floats (or numpy curves) out. Exact definitions in ``docs/metrics.md``.
Scores are anomaly scores: higher = more anomalous; a sample is flagged when ``score >= threshold``.
Ties are handled as scikit-learn does: tied scores form one threshold, so curves only have a vertex per
distinct score, and AUROC equals the Mann-Whitney statistic with ties counted one half.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from manifold_ae.checks import check_choice, check_fraction

__all__ = ["auroc", "roc_curve", "average_precision", "f1_max", "pro_curve", "aupro", "threshold_from_normal",
           "fpr_bound_rank", "threshold_with_fpr_bound", "stands_apart", "stands_apart_false_alarm", "pixel_metrics",
           "image_metrics"]


# ---------------------------------------------------------------------------- input handling
def _to_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor (bf16 has no numpy dtype: go through float32)
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() else x
        x = x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be array-like, got {type(x).__name__}") from err


def _scores(x: Any, name: str) -> np.ndarray:
    a = _to_numpy(x, name).astype(np.float64, copy=False).ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty; expected at least one score")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(a)).sum())} NaN or Inf value(s); expected finite")
    return a


def _binary(x: Any, name: str) -> np.ndarray:
    a = _to_numpy(x, name)
    if a.size == 0:
        raise ValueError(f"{name} is empty; expected at least one label")
    if a.dtype != bool:
        bad = ~np.isin(a, (0, 1))
        if bad.any():
            raise ValueError(f"{name} must be binary (0/1 or bool), found value {a[bad].ravel()[0].item()!r}; "
                             "binarise masks first (e.g. mask > 0)")
    return a.astype(bool)


def _labels_scores(labels: Any, scores: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = _binary(labels, "labels").ravel()
    s = _scores(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same number of entries, got {y.size} and {s.size}")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        only = "1 (anomalous)" if n_pos else "0 (normal)"
        raise ValueError(f"{what} is undefined when labels contain a single class (all {y.size} labels are "
                         f"{only}); expected both normal and anomalous samples")
    return y, s


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2)


def _counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when flagging ``s >= t`` for every distinct score t, highest t first."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), y.size - 1]  # end of each tie group
    tps = np.cumsum(y_sorted, dtype=np.float64)[last]
    fps = (last + 1) - tps
    return tps, fps, s_sorted[last]


# ---------------------------------------------------------------------------- ranking metrics
def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: ``(fpr, tpr, thresholds)``, starting at (0, 0) with threshold +inf, one vertex per score."""
    y, s = _labels_scores(labels, scores, "the ROC curve")
    tps, fps, thr = _counts(y, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thr]


def auroc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve (trapezoid over distinct scores = Mann-Whitney U / (n_pos * n_neg), ties 1/2)."""
    y, s = _labels_scores(labels, scores, "AUROC")
    tps, fps, _ = _counts(y, s)
    return _trapezoid(np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]])


def average_precision(labels: Any, scores: Any) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (step rule, as scikit-learn)."""
    y, s = _labels_scores(labels, scores, "average precision")
    tps, fps, _ = _counts(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_max(labels: Any, scores: Any) -> float:
    """Largest F1 = 2PR / (P + R) over all thresholds (an optimistic, test-set-tuned figure; see docs)."""
    y, s = _labels_scores(labels, scores, "F1-max")
    tps, fps, _ = _counts(y, s)
    f1 = 2 * tps / (tps + fps + y.sum())  # 2TP / (2TP + FP + FN)
    return float(f1.max())


# ---------------------------------------------------------------------------- AUPRO
_STRUCTURES = {8: np.ones((3, 3), dtype=int), 4: ndimage.generate_binary_structure(2, 1).astype(int)}


def _masks_maps(masks: Any, maps: Any) -> tuple[np.ndarray, np.ndarray]:
    m = _binary(masks, "masks")
    a = _to_numpy(maps, "maps")
    if a.size == 0:
        raise ValueError("maps is empty; expected (N, H, W) heat maps")
    for name, arr in (("masks", m), ("maps", a)):
        if arr.ndim not in (2, 3, 4) or (arr.ndim == 4 and arr.shape[1] != 1):
            raise ValueError(f"{name} must have shape (H, W), (N, H, W) or (N, 1, H, W), got {arr.shape}")
    m = m.reshape((-1,) + m.shape[-2:])
    a = a.reshape((-1,) + a.shape[-2:])
    if m.shape != a.shape:
        raise ValueError(f"masks and maps must have the same shape (N, H, W), got {m.shape} and {a.shape}")
    return m, _scores(a, "maps").reshape(a.shape)


def pro_curve(masks: Any, maps: Any, *, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact per-region-overlap curve from one sort of all pixels (Bergmann et al., IJCV 2021).

    Each connected ground-truth region R (per image, ``connectivity`` 8 or 4) gives its pixels the weight
    ``1 / (|R| * n_regions)``; each defect-free pixel (mask 0, in any image) the weight ``1 / n_defect_free``.
    Flagging ``map >= t`` for decreasing t, the cumulative weights are the PRO (mean over regions of the
    fraction flagged) and the FPR. One vertex per distinct map value.

    Returns
    -------
    fpr, pro, thresholds : (K + 1,) arrays, starting at (0, 0) with threshold +inf.
    """
    check_choice(connectivity, "connectivity", (8, 4))
    m, a = _masks_maps(masks, maps)
    labels = np.zeros(m.shape, dtype=np.int64)
    n_regions = 0
    for i in range(m.shape[0]):
        lab, k = ndimage.label(m[i], structure=_STRUCTURES[connectivity])
        labels[i] = np.where(lab > 0, lab + n_regions, 0)
        n_regions += k
    n_ok = int((~m).sum())
    if n_regions == 0:
        raise ValueError("AUPRO is undefined: masks contain no anomalous pixel (no ground-truth region)")
    if n_ok == 0:
        raise ValueError("AUPRO is undefined: masks contain no defect-free pixel (FPR has no denominator)")
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n_regions + 1).astype(np.float64)  # sizes[0] = defect-free count
    pro_w = np.where(flat > 0, 1.0 / (sizes[flat] * n_regions), 0.0)  # sums to 1 over anomalous pixels
    s = a.ravel()
    order = np.argsort(-s, kind="mergesort")  # the single sort
    s_sorted = s[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]  # end of each tie group
    fpr = np.cumsum(flat[order] == 0, dtype=np.int64)[last] / n_ok
    pro = np.minimum(np.cumsum(pro_w[order])[last], 1.0)
    pro[-1] = 1.0  # every pixel flagged: exact, free of summation round-off
    return np.r_[0.0, fpr], np.r_[0.0, pro], np.r_[np.inf, s_sorted[last]]


def _area_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under the piecewise-linear curve (x non-decreasing) from x[0] to ``limit``."""
    j = int(np.searchsorted(x, limit, side="right"))  # x[:j] <= limit
    area = float(_trapezoid(y[:j], x[:j]))
    if j < x.size and x[j - 1] < limit:  # interpolate on the segment that crosses the limit
        y_lim = y[j - 1] + (y[j] - y[j - 1]) * (limit - x[j - 1]) / (x[j] - x[j - 1])
        area += 0.5 * (y[j - 1] + y_lim) * (limit - x[j - 1])
    return area


def aupro(masks: Any, maps: Any, *, fpr_limit: float = 0.3, connectivity: int = 8) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit``: ``int_0^limit PRO d(FPR) / limit``, in [0, 1].

    Parameters
    ----------
    masks : (N, H, W), (N, 1, H, W) or (H, W) binary
        Ground truth; connected regions use 8-connectivity by default (``connectivity=4`` for 4-connectivity).
    maps : same shape as ``masks``
        Anomaly heat maps (higher = more anomalous).
    fpr_limit : float in (0, 1]
        Integration limit; the curve is linearly interpolated at the limit.
    """
    limit = check_fraction(fpr_limit, "fpr_limit", low_inclusive=False)
    fpr, pro, _ = pro_curve(masks, maps, connectivity=connectivity)
    return float(_area_to(fpr, pro, limit) / limit)


# ---------------------------------------------------------------------------- thresholds and reports
def threshold_from_normal(scores: Any, *, quantile: float = 0.99) -> float:
    """Threshold = the ``quantile`` of scores of held-out *normal* data only (linear interpolation).

    With ``quantile=0.99`` about 1 % of normal images (or pixels) exceed it. Never fit it on test data.
    """
    q = check_fraction(quantile, "quantile")
    return float(np.quantile(_scores(scores, "scores"), q))


def fpr_bound_rank(n: int, *, fpr: float, confidence: float) -> tuple[int, float]:
    """Which order statistic of ``n`` normal scores bounds the false-positive rate by ``fpr`` with ``confidence``.

    For continuous, exchangeable scores the false-positive rate of a threshold at the ``k``-th largest of ``n``
    normal scores is Beta(k, n − k + 1)-distributed, so ``P(FPR <= fpr) = P(Binomial(n, fpr) >= k)``. The
    returned ``k`` is the largest (the lowest threshold) with that probability at least ``confidence``; when
    even ``k = 1`` (the maximum) falls short, ``k = 1`` and its smaller probability are returned.

    Returns
    -------
    (k, P(FPR <= fpr) at that k)
    """
    from scipy.stats import binom

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of normal scores, got {n!r}")
    fpr = check_fraction(fpr, "fpr", low_inclusive=False, high_inclusive=False)
    confidence = check_fraction(confidence, "confidence", low_inclusive=False, high_inclusive=False)
    k = np.arange(1, n + 1)
    prob = binom.sf(k - 1, n, fpr)  # P(Binomial(n, fpr) >= k), decreasing in k
    ok = np.nonzero(prob >= confidence)[0]
    best = int(ok[-1]) if ok.size else 0
    return best + 1, float(prob[best])


def threshold_with_fpr_bound(scores: Any, *, fpr: float, confidence: float) -> tuple[float, int, float]:
    """The ``k``-th largest normal score of :func:`fpr_bound_rank`: ``(threshold, k, P(FPR <= fpr))``."""
    s = np.sort(_scores(scores, "scores"))[::-1]
    k, prob = fpr_bound_rank(int(s.size), fpr=fpr, confidence=confidence)
    return float(s[k - 1]), k, prob


def stands_apart(scores: Any, k: int) -> tuple[float, int] | None:
    """How far the ``k``-th largest score stands apart from the rest: ``(r, index)`` or None (too few scores).

    ``r = (s_(k) − s_(k+1)) / (s_(k+1) − s_(m))`` with ``s_(i)`` the i-th largest of the n scores and
    ``m = ceil(n / 2)`` (the upper median): the gap below the threshold's score over the spread of the upper half
    beneath it. ``index`` is the position of ``s_(k)`` in ``scores``. A large ``r`` means one image alone sets a
    threshold at ``s_(k)``: an outlier among the normal images (mislabelled, or a rare kind of normal). The
    probability of ``r > c`` for exponential-tailed scores is :func:`stands_apart_false_alarm`.
    """
    s = _scores(scores, "scores")
    n, m = int(s.size), math.ceil(int(s.size) / 2)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive rank, got {k!r}")
    if m <= k + 1:
        return None
    order = np.argsort(-s, kind="stable")
    top, below, median = s[order[k - 1]], s[order[k]], s[order[m - 1]]
    spread = below - median
    if spread <= 0:
        return (math.inf if top > below else 0.0), int(order[k - 1])
    return float((top - below) / spread), int(order[k - 1])


def stands_apart_false_alarm(n: int, k: int, factor: float) -> float:
    """P(r > ``factor``) for :func:`stands_apart` when the n scores are i.i.d. exponential.

    By Rényi's representation the spacings s_(i) − s_(i+1) of exponential order statistics are independent
    E_i / i with E_i ~ Exp(1), so with D = Σ_{i=k+1}^{m−1} E_i / i, P(E_k / k > c D) = E exp(−c k D) =
    Π_{i=k+1}^{m−1} i / (i + c k) (m = ceil(n / 2)). Lighter tails (Gaussian scores) alarm less often; heavier
    ones more.
    """
    m = math.ceil(n / 2)
    return float(np.prod([i / (i + factor * k) for i in range(k + 1, m)]))


def _at_threshold(y: np.ndarray, s: np.ndarray, threshold: float, prefix: str) -> dict[str, float]:
    flag = s >= threshold
    tp = float(np.sum(flag & y))
    fp = float(np.sum(flag & ~y))
    fn = float(np.sum(~flag & y))
    return {f"{prefix}_precision": tp / (tp + fp) if tp + fp else 0.0,
            f"{prefix}_recall": tp / (tp + fn),
            f"{prefix}_fpr": fp / float(np.sum(~y)),
            f"{prefix}_f1": 2 * tp / (2 * tp + fp + fn),
            f"{prefix}_threshold": float(threshold)}


def pixel_metrics(masks: Any, maps: Any, *, fpr_limit: float = 0.3, threshold: float | None = None,
                  connectivity: int = 8) -> dict[str, float]:
    """Pixel-level metrics over all pixels of all images: ``pixel_auroc``, ``aupro``, ``pixel_ap``,
    ``pixel_f1_max``; with a ``threshold`` (from normal data) also precision/recall/FPR/F1 at it."""
    m, a = _masks_maps(masks, maps)
    y, s = _labels_scores(m, a, "pixel AUROC")
    tps, fps, _ = _counts(y, s)
    fpr, tpr = np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]
    out = {"pixel_auroc": float(_trapezoid(tpr, fpr)),
           "aupro": aupro(m, a, fpr_limit=fpr_limit, connectivity=connectivity),
           "pixel_ap": float(np.sum(np.diff(np.r_[0.0, tps / tps[-1]]) * tps / (tps + fps))),
           "pixel_f1_max": float(np.max(2 * tps / (tps + fps + tps[-1])))}
    if threshold is not None:
        out |= _at_threshold(y, s, float(threshold), "pixel")
    return out


def image_metrics(labels: Any, scores: Any, *, threshold: float | None = None) -> dict[str, float]:
    """Image-level metrics: ``image_auroc``, ``image_ap``, ``image_f1_max``; with a ``threshold`` (from
    normal data) also precision/recall/FPR/F1 at it."""
    y, s = _labels_scores(labels, scores, "image AUROC")
    out = {"image_auroc": auroc(y, s), "image_ap": average_precision(y, s), "image_f1_max": f1_max(y, s)}
    if threshold is not None:
        out |= _at_threshold(y, s, float(threshold), "image")
    return out
