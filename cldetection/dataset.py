"""``CephalometricDataset``: MMPose's COCO-style dataset plus each image's pixel spacing.

Step 2 writes COCO-style JSON whose ``images`` carry ``spacing`` (mm per pixel); this subclass only adds that
value to every sample (so ``PackCephalometricInputs`` can hand it to ``CephalometricMetric``) and supplies the
landmark metainfo. Everything else -- loading, filtering, top-down sample layout -- is MMPose's.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

import cv2
import numpy as np
from tqdm import tqdm

from mmpose.datasets.datasets.base import BaseCocoStyleDataset
from mmpose.registry import DATASETS

from .landmarks import NUM_CL2023_LANDMARKS, cephalometric_metainfo

logger = logging.getLogger(__name__)


def whole_image_bbox(width: int, height: int) -> np.ndarray:
    """The box (1 x 4, xyxy) every cephalogram is seen through, in training, step 4 and step 5 alike.

    Step 2 stores the whole image ``[0, 0, w, h]`` (COCO xywh); MMPose's COCO-style loader clips its corners
    to the last pixel, giving ``[0, 0, w - 1, h - 1]``. The predictor must use exactly this box, or its crops
    differ slightly from those the model was trained and validated on.
    """
    return np.array([[0, 0, width - 1, height - 1]], dtype=np.float32)


def _decode_image(path: str) -> np.ndarray:
    """A training image as ``LoadImage`` reads it (BGR), kept as one channel when its channels are equal."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f'{path}: cannot read the image (missing or not an image file)')
    if np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]):
        return np.ascontiguousarray(image[..., 0])
    return image


@DATASETS.register_module()
class CephalometricDataset(BaseCocoStyleDataset):
    """Lateral cephalograms, one whole-image instance per image.

    Args:
        num_landmarks: landmarks per image (38 for CL-Detection 2023, 19 for ISBI 2015). Ignored when an
            explicit ``metainfo`` is given.
        cache_images: decode every image once, when the dataset is built, and keep it in memory (grey images
            as one channel: 4.6 MB for a 1935 x 2400 radiograph). Decoding a radiograph costs more than a
            light model's training step; the cache is built before the data loader forks its workers, which
            share it. MMPose's ``LoadImage`` then uses the cached array (``img``) instead of reading the file.
        **kwargs: passed to :class:`mmpose.datasets.BaseCocoStyleDataset` (``ann_file``, ``data_root``,
            ``data_prefix``, ``pipeline``, ``test_mode``, ...).
    """

    METAINFO: dict = cephalometric_metainfo(NUM_CL2023_LANDMARKS)

    def __init__(self, *args: Any, num_landmarks: Optional[int] = None, metainfo: Optional[dict] = None,
                 cache_images: bool = False, **kwargs: Any) -> None:
        if metainfo is None and num_landmarks is not None:
            metainfo = cephalometric_metainfo(num_landmarks)
        self.cache_images = cache_images
        self._image_cache: dict[str, np.ndarray] = {}
        super().__init__(*args, metainfo=metainfo, **kwargs)

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        super().full_init()
        if self.cache_images:
            paths = sorted({self.get_data_info(i)['img_path'] for i in range(len(self))})
            for path in tqdm(paths, desc=f'decode {self.ann_file}', unit='image', leave=False, disable=None):
                self._image_cache[path] = _decode_image(path)
            logger.info('%s: %d images decoded and kept in memory (%.0f MiB)', self.ann_file, len(paths),
                        sum(a.nbytes for a in self._image_cache.values()) / 2 ** 20)

    def get_data_info(self, idx: int) -> dict:
        data_info = super().get_data_info(idx)
        cached = self._image_cache.get(data_info['img_path'])
        if cached is not None:
            # a fresh array each time: transforms may write to it, the cache must stay as decoded
            data_info['img'] = cv2.cvtColor(cached, cv2.COLOR_GRAY2BGR) if cached.ndim == 2 else cached.copy()
        return data_info

    def parse_data_info(self, raw_data_info: dict) -> Optional[dict]:
        data_info = super().parse_data_info(raw_data_info)
        if data_info is None:
            return None
        img = raw_data_info['raw_img_info']
        spacing = img.get('spacing')
        if not isinstance(spacing, (int, float)) or not math.isfinite(spacing) or spacing <= 0:
            raise ValueError(f'{self.ann_file}: image {img.get("id")} ({img.get("file_name")}) has spacing '
                             f'{spacing!r}; every image needs "spacing" > 0 in mm per pixel')
        expected = self.metainfo['num_keypoints']
        found = data_info['keypoints'].shape[1]
        if found != expected:
            raise ValueError(f'{self.ann_file}: annotations have {found} landmarks but the dataset expects '
                             f'{expected}; set num_landmarks={found} in the dataset config (and the head\'s '
                             f'out_channels)')
        data_info['spacing'] = float(spacing)
        return data_info
