"""Metrics against scikit-learn, brute force, and a plain per-threshold AUPRO reference written here."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from sklearn import metrics as skm

from manifold_ae.anomaly.metrics import (aupro, auroc, average_precision, f1_max, image_metrics, pixel_metrics,
                                         pro_curve, roc_curve, threshold_from_normal)

labels_scores = st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < len(y)),
    st.lists(st.integers(0, 4), min_size=n, max_size=n)))  # few score values: many ties


@settings(max_examples=60, deadline=None)
@given(labels_scores)
def test_auroc_matches_sklearn_with_ties(data):
    y, s = map(np.asarray, data)
    assert auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert auroc(y, s + 0.25 * np.arange(len(s))) == pytest.approx(
        skm.roc_auc_score(y, s + 0.25 * np.arange(len(s))), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(labels_scores)
def test_average_precision_matches_sklearn_with_ties(data):
    y, s = map(np.asarray, data)
    assert average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_roc_curve_matches_sklearn_without_dropping_points():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 2)
    fpr, tpr, thr = roc_curve(torch.from_numpy(y), torch.from_numpy(s))
    ref_fpr, ref_tpr, ref_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-15)
    np.testing.assert_allclose(thr[1:], ref_thr[1:], atol=0)


@settings(max_examples=40, deadline=None)
@given(labels_scores)
def test_f1_max_matches_brute_force(data):
    y, s = map(np.asarray, data)
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        tp, fp, fn = np.sum(pred & (y == 1)), np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    assert f1_max(y, s) == pytest.approx(best, abs=1e-12)


# ------------------------------------------------------------------ AUPRO: plain reference, written independently
def reference_aupro(masks, maps, fpr_limit=0.3, structure=None):
    """Loop over every distinct threshold; PRO = mean over connected regions of the fraction flagged."""
    regions = []
    for i in range(masks.shape[0]):
        lab, k = ndimage.label(masks[i], structure=structure)
        regions += [(i, lab == r) for r in range(1, k + 1)]
    normal = masks == 0
    points = [(0.0, 0.0)]
    for t in sorted(np.unique(maps), reverse=True):
        flagged = maps >= t
        pro = np.mean([flagged[i][region].sum() / region.sum() for i, region in regions])
        fpr = (flagged & normal).sum() / normal.sum()
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:  # cut this segment at the limit
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def random_masks(rng, n, h, w, regions):
    masks = np.zeros((n, h, w), dtype=np.uint8)
    for i in range(n):
        for _ in range(rng.integers(1, regions + 1)):
            r0, c0 = rng.integers(0, h - 1), rng.integers(0, w - 1)
            masks[i, r0:r0 + rng.integers(1, 4), c0:c0 + rng.integers(1, 5)] = 1
    return masks


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("quantise", [False, True])
def test_aupro_exact_matches_per_threshold_reference(seed, quantise):
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, 3, 10, 12, regions=4)
    maps = rng.random(masks.shape) + 0.6 * masks * rng.random(masks.shape)
    if quantise:
        maps = np.round(maps * 8) / 8  # large tie groups, some straddling FPR 0.3
    for limit in (0.3, 0.05, 1.0):
        assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(
            reference_aupro(masks, maps, limit, structure=np.ones((3, 3))), abs=1e-9)
    assert aupro(masks, maps, connectivity=4) == pytest.approx(reference_aupro(masks, maps), abs=1e-9)


def test_aupro_connectivity_changes_region_count_for_diagonal_touch():
    masks = np.zeros((1, 4, 4), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # one region with 8-, two with 4-connectivity
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = 1.0  # only one of the two pixels found
    maps[0, 1, 1] = 0.1  # below the normal pixels (0.5 is never reached by normals: set them to 0.5)
    maps[~masks] = 0.5
    # 8-connectivity: one region, PRO = 1/2 up to FPR 1 -> AUPRO = 0.5
    assert aupro(masks, maps, connectivity=8) == pytest.approx(0.5, abs=1e-12)
    # 4-connectivity: two regions, PRO = mean(1, 0) = 0.5 as well; pixel-level structure differs only in counts
    assert aupro(masks, maps, connectivity=4) == pytest.approx(0.5, abs=1e-12)
    fpr, pro, _ = pro_curve(masks, maps, connectivity=4)
    np.testing.assert_allclose(pro, [0.0, 0.5, 0.5, 1.0], atol=1e-15)
    np.testing.assert_allclose(fpr, [0.0, 0.0, 1.0, 1.0], atol=1e-15)


def test_aupro_toy_cases_by_hand():
    masks = np.zeros((2, 6, 6), dtype=np.uint8)
    masks[0, 1:3, 1:3] = 1
    masks[1, 3:6, 3:6] = 1
    # perfect map: (0,0) -> (0,1) -> (1,1): AUPRO = 1
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0, abs=1e-12)
    # constant map: one threshold, (0,0) -> (1,1): area under y = x up to 0.3 is 0.3^2 / 2, / 0.3 -> 0.15
    assert aupro(masks, np.full(masks.shape, 0.7)) == pytest.approx(0.15, abs=1e-12)
    assert aupro(masks, np.full(masks.shape, 0.7), fpr_limit=1.0) == pytest.approx(0.5, abs=1e-12)
    # region-averaged, not pixel-averaged: small region (4 px) found, big one (9 px) below the normals.
    maps = np.full(masks.shape, 0.5)
    maps[0][masks[0] == 1] = 1.0
    maps[1][masks[1] == 1] = 0.0
    # curve (0,0) -> (0, 1/2) -> (1, 1/2) -> (1, 1): AUPRO(0.3) = 1/2 (pixel recall would be 4/13)
    assert aupro(masks, maps) == pytest.approx(0.5, abs=1e-12)
    # masks may carry a channel axis, tensors are accepted
    assert aupro(torch.from_numpy(masks)[:, None], torch.from_numpy(maps)[:, None]) == pytest.approx(0.5)


def test_threshold_from_normal_is_the_normal_quantile():
    rng = np.random.default_rng(3)
    normal = rng.random(1001)
    assert threshold_from_normal(normal) == pytest.approx(np.quantile(normal, 0.99), abs=0)
    assert threshold_from_normal(torch.from_numpy(normal), quantile=0.5) == pytest.approx(np.median(normal))
    # about 1 % of fresh normal scores exceed a 0.99 threshold fitted on 1e5 normal scores
    # (sd of the fitted quantile and of the fresh rate both ~ sqrt(0.01 * 0.99 / 1e5) = 3e-4)
    t = threshold_from_normal(rng.random(100_000))
    assert abs(np.mean(rng.random(100_000) >= t) - 0.01) < 0.002


def test_pixel_and_image_metrics_dicts_against_sklearn_and_counts():
    rng = np.random.default_rng(4)
    masks = random_masks(rng, 4, 8, 8, regions=3)
    maps = rng.random(masks.shape) + masks
    out = pixel_metrics(masks, maps, threshold=1.0)
    y, s = masks.ravel(), maps.ravel()
    assert out["pixel_auroc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert out["pixel_ap"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert out["aupro"] == pytest.approx(reference_aupro(masks, maps, structure=np.ones((3, 3))), abs=1e-9)
    assert out["pixel_f1_max"] == pytest.approx(f1_max(y, s), abs=1e-12)
    pred = s >= 1.0
    tp, fp, fn = np.sum(pred & (y == 1)), np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
    assert out["pixel_precision"] == pytest.approx(tp / (tp + fp))
    assert out["pixel_recall"] == pytest.approx(tp / (tp + fn))
    assert out["pixel_fpr"] == pytest.approx(fp / np.sum(y == 0))
    assert out["pixel_f1"] == pytest.approx(skm.f1_score(y, pred))
    labels = np.array([0, 0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.2, 0.9])
    im = image_metrics(labels, scores, threshold=0.4)
    assert im["image_auroc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    assert im["image_ap"] == pytest.approx(skm.average_precision_score(labels, scores), abs=1e-12)
    assert im["image_f1"] == pytest.approx(skm.f1_score(labels, scores >= 0.4))
    assert all(isinstance(v, float) for v in list(out.values()) + list(im.values()))


def test_bad_inputs_raise_with_clear_messages():
    with pytest.raises(ValueError, match=r"AUROC is undefined when labels contain a single class \(all 3 labels are 0"):
        auroc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="image AUROC is undefined when labels contain a single class"):
        image_metrics([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="labels is empty"):
        auroc([], [])
    with pytest.raises(ValueError, match="labels and scores must have the same number of entries, got 3 and 2"):
        average_precision([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="scores contains 1 NaN"):
        f1_max([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match=r"labels must be binary \(0/1 or bool\), found value 2"):
        auroc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"masks and maps must have the same shape \(N, H, W\), got \(2, 4, 4\) and \(2, 4, 5\)"):
        aupro(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="masks must be binary.*found value 255"):
        pixel_metrics(np.full((1, 2, 2), 255), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="AUPRO is undefined: masks contain no anomalous pixel"):
        aupro(np.zeros((1, 4, 4)), np.random.default_rng(0).random((1, 4, 4)))
    with pytest.raises(ValueError, match="AUPRO is undefined: masks contain no defect-free pixel"):
        aupro(np.ones((1, 4, 4)), np.random.default_rng(0).random((1, 4, 4)))
    with pytest.raises(ValueError, match="masks is empty"):
        aupro(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))
    with pytest.raises(ValueError, match=r"fpr_limit must lie in \(0.0, 1.0\]"):
        aupro(np.eye(4)[None], np.eye(4)[None], fpr_limit=0.0)
    with pytest.raises(ValueError, match="connectivity must be one of"):
        aupro(np.eye(4)[None], np.eye(4)[None], connectivity=6)
    with pytest.raises(ValueError, match=r"masks must have shape \(H, W\), \(N, H, W\) or \(N, 1, H, W\)"):
        aupro(np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"quantile must lie in \[0.0, 1.0\]"):
        threshold_from_normal([0.1, 0.2], quantile=1.5)
    with pytest.raises(ValueError, match="scores is empty"):
        threshold_from_normal([])
