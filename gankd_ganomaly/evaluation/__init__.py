"""Evaluating a GANomaly detector: scores and AUROC (``scoring``), the decision threshold (``threshold``),
parameter and FLOP counts (``flops``), the classical baselines (``baselines``) and pictures (``plots``)."""
from .scoring import (BN_MODES, Detector, anomaly_scores, as_image_tensor, auroc, evaluate_auroc,
                      scoring_mode)
from .threshold import calibrate_threshold, calibration_split, rates_at_threshold, threshold_rank

__all__ = ["BN_MODES", "Detector", "anomaly_scores", "as_image_tensor", "auroc", "calibrate_threshold",
           "calibration_split", "evaluate_auroc", "rates_at_threshold", "scoring_mode", "threshold_rank"]
