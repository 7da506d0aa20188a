"""``CephalometricDataset``: MMPose's COCO-style dataset plus each image's pixel spacing.

Step 2 writes COCO-style JSON whose ``images`` carry ``spacing`` (mm per pixel); this subclass only adds that
value to every sample (so ``PackCephalometricInputs`` can hand it to ``CephalometricMetric``) and supplies the
landmark metainfo. Everything else -- loading, filtering, top-down sample layout -- is MMPose's.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from mmpose.datasets.datasets.base import BaseCocoStyleDataset
from mmpose.registry import DATASETS

from .landmarks import NUM_CL2023_LANDMARKS, cephalometric_metainfo


def whole_image_bbox(width: int, height: int) -> np.ndarray:
    """The box (1 x 4, xyxy) every cephalogram is seen through, in training, step 4 and step 5 alike.

    Step 2 stores the whole image ``[0, 0, w, h]`` (COCO xywh); MMPose's COCO-style loader clips its corners
    to the last pixel, giving ``[0, 0, w - 1, h - 1]``. The predictor must use exactly this box, or its crops
    differ slightly from those the model was trained and validated on.
    """
    return np.array([[0, 0, width - 1, height - 1]], dtype=np.float32)


@DATASETS.register_module()
class CephalometricDataset(BaseCocoStyleDataset):
    """Lateral cephalograms, one whole-image instance per image.

    Args:
        num_landmarks: landmarks per image (38 for CL-Detection 2023, 19 for ISBI 2015). Ignored when an
            explicit ``metainfo`` is given.
        **kwargs: passed to :class:`mmpose.datasets.BaseCocoStyleDataset` (``ann_file``, ``data_root``,
            ``data_prefix``, ``pipeline``, ``test_mode``, ...).
    """

    METAINFO: dict = cephalometric_metainfo(NUM_CL2023_LANDMARKS)

    def __init__(self, *args: Any, num_landmarks: Optional[int] = None, metainfo: Optional[dict] = None,
                 **kwargs: Any) -> None:
        if metainfo is None and num_landmarks is not None:
            metainfo = cephalometric_metainfo(num_landmarks)
        super().__init__(*args, metainfo=metainfo, **kwargs)

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
