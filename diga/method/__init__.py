"""The DiGA method pieces as pure, batched, device-agnostic torch functions."""

from .augment import PhotometricConfig, augment_and_blend, blend, photometric_augment
from .ema import EMATeacher, ema_alpha, unwrap_model
from .losses import distillation_from_logits, ohem_ce, seg_ce, soft_cross_entropy, symmetric_distillation
from .mix import (
    class_mix_mask,
    class_presence,
    cross_domain_mixture,
    make_cross_domain_mixture,
    mix,
    target_cross_mix,
)
from .prototypes import (
    CentroidAccumulator,
    apply_centroid_update,
    batch_class_sums,
    class_feature_means,
    class_feature_sums,
    ema_centroids,
    prototype_labels,
    prototype_labels_bilinear,
    select_dynamic,
    select_none,
    select_threshold,
    update_centroids,
)
from .pseudo import pseudo_labels
from .translate import (
    TRANSLATORS,
    Translator,
    build_translator,
    color_transfer,
    fda,
    lab_to_rgb,
    pair_targets,
    rgb_to_lab,
)

__all__ = [
    "PhotometricConfig", "augment_and_blend", "blend", "photometric_augment",
    "EMATeacher", "ema_alpha", "unwrap_model",
    "seg_ce", "ohem_ce", "soft_cross_entropy", "symmetric_distillation", "distillation_from_logits",
    "class_mix_mask", "class_presence", "cross_domain_mixture", "make_cross_domain_mixture", "mix",
    "target_cross_mix",
    "CentroidAccumulator", "apply_centroid_update", "batch_class_sums", "class_feature_means",
    "class_feature_sums", "ema_centroids", "prototype_labels", "prototype_labels_bilinear", "select_dynamic", "select_none",
    "select_threshold", "update_centroids",
    "pseudo_labels",
    "TRANSLATORS", "Translator", "build_translator", "color_transfer", "fda", "lab_to_rgb",
    "pair_targets", "rgb_to_lab",
]
