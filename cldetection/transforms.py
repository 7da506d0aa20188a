"""Data transforms registered into MMPose's ``TRANSFORMS`` registry."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmpose.datasets.transforms import PackPoseInputs
from mmpose.registry import TRANSFORMS

#: PackPoseInputs' default meta keys plus ``spacing``, which CephalometricMetric needs for errors in mm, and
#: the cascade's source image (``cldetection.cascade.KeepSourceImage``; absent keys are skipped).
CEPHALOMETRIC_META_KEYS: tuple[str, ...] = (
    'id', 'img_id', 'img_path', 'category_id', 'crowd_index', 'ori_shape', 'img_shape', 'input_size',
    'input_center', 'input_scale', 'flip', 'flip_direction', 'flip_indices', 'raw_ann_info', 'dataset_name',
    'spacing', 'source_img', 'source_factor')


@TRANSFORMS.register_module()
class PackCephalometricInputs(PackPoseInputs):
    """``PackPoseInputs`` that also keeps each image's pixel spacing (mm) in the sample's metainfo."""

    def __init__(self, meta_keys: Sequence[str] = CEPHALOMETRIC_META_KEYS, pack_transformed: bool = False):
        super().__init__(meta_keys=tuple(meta_keys), pack_transformed=pack_transformed)


@TRANSFORMS.register_module()
class RandomXRayIntensity(BaseTransform):
    """Random contrast, brightness and gamma for radiographs (grey images stored as 3 equal channels).

    Unlike colour jitter, it changes all channels identically, so the image stays grey. Applied to the
    (uint8) image before cropping; each part is applied with probability ``prob``.

    Args:
        contrast_range: multiplicative contrast about mid-grey.
        brightness_delta: additive shift in grey levels, drawn from [-delta, delta].
        gamma_range: exponent applied to intensities in [0, 1].
        prob: probability of applying each of the three changes.

    Draws from NumPy's global generator, which MMEngine seeds per run and per dataloader worker, so runs with
    the same seed augment identically (and workers differ).
    """

    def __init__(self, contrast_range: Sequence[float] = (0.7, 1.3), brightness_delta: float = 25.0,
                 gamma_range: Sequence[float] = (0.7, 1.5), prob: float = 0.5) -> None:
        self.contrast_range = tuple(contrast_range)
        self.brightness_delta = float(brightness_delta)
        self.gamma_range = tuple(gamma_range)
        self.prob = prob

    def transform(self, results: dict) -> dict:
        img = results['img'].astype(np.float32)
        if np.random.rand() < self.prob:
            img = (img - 127.5) * np.random.uniform(*self.contrast_range) + 127.5
        if np.random.rand() < self.prob:
            img = img + np.random.uniform(-self.brightness_delta, self.brightness_delta)
        img = np.clip(img, 0, 255)
        if np.random.rand() < self.prob:
            img = 255.0 * (img / 255.0) ** np.random.uniform(*self.gamma_range)
        results['img'] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(contrast_range={self.contrast_range}, brightness_delta='
                f'{self.brightness_delta}, gamma_range={self.gamma_range}, prob={self.prob})')
