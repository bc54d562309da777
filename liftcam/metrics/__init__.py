"""Faithfulness and localisation metrics for class activation maps (numpy only).

Every metric that needs the model takes it as a callable

    predict(x: float32 ndarray (B, C_in, H, W)) -> logits (B, n_classes)

(the engine passes a batched ONNX Runtime call) and a ``batch_size``: images are
sent to ``predict`` in batches of at most ``batch_size`` rows, and the different
perturbations of all images are stacked into one stream so that the number of
calls is ``ceil(total_evaluations / batch_size)``. Probabilities are the softmax of
the logits, computed stably (the maximum logit is subtracted first) in float64.

Conventions shared by all functions
-----------------------------------
- ``images``: floating array (N, C_in, H, W), finite, N >= 1. Images are already
  normalised model inputs, so "absent" pixels are set to a ``baseline`` value (0 by
  default, i.e. the dataset mean after mean/std normalisation).
- ``maps``: floating array (N, H, W) (or (N, 1, H, W)), finite, same H, W as the
  images. Average Drop / IC / ADD require maps in [0, 1] (the engine's maps are
  min-max normalised); deletion / insertion only use the order of the values.
- ``targets``: integer class indices, (N,) or one int for all images; checked
  against the number of classes the model returns.
- ``baseline``: a number, an array broadcastable to (N, C_in, H, W) (a length-C_in
  vector is read as one value per channel), ``"zero"`` or ``"blur"`` (the image
  blurred with a normalised Gaussian, see :func:`gaussian_blur`).

Bad input raises :class:`liftcam.engine.errors.InputError` with a message that
says what was wrong.

References
----------
- [GradCAM++] Chattopadhyay, Sarkar, Howlader, Balasubramanian, "Grad-CAM++:
  Generalized Gradient-based Visual Explanations for Deep Convolutional Networks",
  WACV 2018, §4.1 (Average Drop %, % Increase in Confidence).
- [LIFT-CAM] Jung & Oh, "Towards Better Explanations of Class Activation Mapping",
  ICCV 2021, §5 (Average Drop, Increase in Confidence, Average Drop in Deletion,
  deletion / insertion; closeness of CAM coefficients to SHAP values).
- [RISE] Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of
  Black-box Models", BMVC 2018, §4.1 (deletion and insertion curves and AUC).
- [EB] Zhang, Lin, Brandt, Shen, Sclaroff, "Top-down Neural Attention by
  Excitation Backprop", ECCV 2016, §5.1 (pointing game, 15-pixel tolerance).
- [Score-CAM] Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
  Convolutional Neural Networks", CVPR Workshops 2020, §4.3 (energy-based
  pointing game).
"""

from liftcam.engine.tail import softmax
from liftcam.metrics.agreement import AgreementResult, coefficient_agreement, rankdata
from liftcam.metrics.causal import (
    DEFAULT_STEPS,  # noqa: F401  (not in __all__, kept importable)
    CurveResult,
    deletion_auc,
    insertion_auc,
    trapezoid_auc,
)
from liftcam.metrics.confidence import (
    ConfidenceResult,
    average_drop,
    average_drop_in_deletion,
    confidence_metrics,
    increase_in_confidence,
)
from liftcam.metrics.localisation import (
    EnergyResult,
    PointingResult,
    energy_pointing_game,
    pointing_game,
)
from liftcam.metrics.perturb import Baseline, Predict, gaussian_blur  # noqa: F401

__all__ = [
    "ConfidenceResult",
    "CurveResult",
    "PointingResult",
    "EnergyResult",
    "AgreementResult",
    "softmax",
    "gaussian_blur",
    "average_drop",
    "increase_in_confidence",
    "average_drop_in_deletion",
    "confidence_metrics",
    "deletion_auc",
    "insertion_auc",
    "trapezoid_auc",
    "pointing_game",
    "energy_pointing_game",
    "rankdata",
    "coefficient_agreement",
]
