"""Anomaly scores (residual maps, smoothing, image and vector scores) and metrics (AUROC, AP, F1-max, AUPRO)."""
from manifold_ae.anomaly.metrics import (
    aupro,
    auroc,
    average_precision,
    f1_max,
    image_metrics,
    pixel_metrics,
    pro_curve,
    roc_curve,
    threshold_from_normal,
)
from manifold_ae.anomaly.scoring import (
    gaussian_kernel1d,
    image_scores,
    residual_map,
    smooth,
    vector_scores,
)

__all__ = ["aupro", "auroc", "average_precision", "f1_max", "gaussian_kernel1d",
           "image_metrics", "image_scores", "pixel_metrics", "pro_curve", "residual_map", "roc_curve", "smooth",
           "threshold_from_normal", "vector_scores"]
