"""Data transforms registered into MMPose's ``TRANSFORMS`` registry: packing with the pixel spacing, X-ray
intensity augmentation, and the two transforms the cascade's pipelines need (the source image of the local stage,
and an anti-aliased ``TopdownAffine`` for the global stage)."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmpose.datasets.transforms import PackPoseInputs, TopdownAffine
from mmpose.registry import TRANSFORMS

from .geometry import area_downscale, from_reduced, to_reduced

#: PackPoseInputs' default meta keys plus ``spacing``, which CephalometricMetric needs for errors in mm, and
#: the cascade's source image (:class:`KeepSourceImage`; absent keys are skipped).
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


@TRANSFORMS.register_module()
class AntiAliasTopdownAffine(TopdownAffine):
    """MMPose's ``TopdownAffine`` that first reduces the image by area averaging when the crop shrinks it.

    When the box is more than twice the input size, the image is reduced ``floor(box / input)`` times with
    :func:`area_downscale` and the box and keypoints are mapped onto the reduced image before MMPose's warp;
    afterwards every output key (``input_center``, ``input_scale``, ``bbox_*``) is mapped back, so downstream
    transforms, the codec and MMPose's back-projection of predictions are unchanged.
    """

    def transform(self, results: dict) -> Optional[dict]:
        w, h = self.input_size
        scale = self._fix_aspect_ratio(results['bbox_scale'], aspect_ratio=w / h)[0]
        factor = int(min(scale[0] / w, scale[1] / h))
        if factor < 2:
            return super().transform(results)
        originals = {key: results[key] for key in ('img', 'bbox_center', 'bbox_scale', 'keypoints')
                     if results.get(key) is not None}
        results['img'] = area_downscale(results['img'], factor)
        results['bbox_center'] = to_reduced(results['bbox_center'], factor)
        results['bbox_scale'] = results['bbox_scale'] / factor
        if 'keypoints' in originals:
            results['keypoints'] = originals['keypoints'].copy()
            results['keypoints'][..., :2] = to_reduced(originals['keypoints'][..., :2], factor)
        results = super().transform(results)
        if 'keypoints' in originals:  # (absent at inference: no key may appear that was not there)
            results['keypoints'] = originals['keypoints']
        results['bbox_center'] = originals['bbox_center']
        results['bbox_scale'] = results['bbox_scale'] * factor
        results['input_center'] = from_reduced(results['input_center'], factor)
        results['input_scale'] = results['input_scale'] * factor
        return results


@TRANSFORMS.register_module()
class KeepSourceImage(BaseTransform):
    """Keep the radiograph, grey and reduced ``factor`` times (area averaging), for the cascade's local stage.

    Must come before the transform that crops the image (``TopdownAffine``), and ``PackCephalometricInputs``
    must keep ``source_img`` and ``source_factor`` (it does by default). The grey copy is a third of the memory of the
    3-channel image, and radiographs carry no colour.
    """

    def __init__(self, factor: int = 2) -> None:
        if int(factor) != factor or factor < 1:
            raise ValueError(f'KeepSourceImage: factor must be a positive integer, got {factor!r}')
        self.factor = int(factor)

    def transform(self, results: dict) -> dict:
        img = results['img']
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 and img.shape[2] == 3 else \
            (img[..., 0] if img.ndim == 3 else img)
        results['source_img'] = area_downscale(np.ascontiguousarray(grey), self.factor)
        results['source_factor'] = self.factor
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(factor={self.factor})'

