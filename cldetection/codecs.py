"""Heatmap codecs: MMPose's UDP heatmap with a second way to read a landmark off its heatmap.

MMPose's UDP decoding takes the heatmap's peak and refines it to sub-pixel precision (a Taylor step on the
log-heatmap, DARK-UDP): the *mode* of what the network predicts. A heatmap trained with the MSE against a
Gaussian approximates the Gaussian blurred by the network's uncertainty about where the landmark is. Where
that uncertainty is lopsided (a landmark on a contour, whose position along the contour the image barely
fixes), the peak sits at the most likely point, whereas the radial error a user is scored by is smallest nearer
the distribution's middle. ``decode='centroid'`` reads the heatmap's centre of mass in a window around the peak,
after subtracting a fraction of the peak (so the flat background far from the landmark does not pull the
estimate toward the window's centre).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from mmpose.codecs import UDPHeatmap
from mmpose.codecs.utils import get_heatmap_maximum
from mmpose.registry import KEYPOINT_CODECS


def heatmap_centroids(heatmaps: np.ndarray, peaks: np.ndarray, radius: int, floor: float) -> np.ndarray:
    """Centre of mass of each heatmap (``K x H x W``) in the ``(2 radius + 1)``-pixel square around its peak
    (``K x 2``, x y heatmap pixels), with weights ``max(h - floor * peak value, 0)``: ``K x 2`` heatmap pixels.
    A heatmap whose peak is not positive (a flat map: the landmark is not in view) keeps its peak."""
    num, height, width = heatmaps.shape
    centroids = peaks.astype(np.float64).copy()
    for k in range(num):
        x, y = peaks[k]
        if not (np.isfinite(x) and np.isfinite(y)) or x < 0 or y < 0:
            continue
        x, y = int(x), int(y)
        top, bottom = max(y - radius, 0), min(y + radius + 1, height)
        left, right = max(x - radius, 0), min(x + radius + 1, width)
        window = heatmaps[k, top:bottom, left:right].astype(np.float64)
        peak = heatmaps[k, y, x]
        if not peak > 0:
            continue
        weights = np.clip(window - floor * peak, 0.0, None)
        total = weights.sum()
        if total <= 0:
            continue
        rows, cols = np.mgrid[top:bottom, left:right]
        centroids[k] = (weights * cols).sum() / total, (weights * rows).sum() / total
    return centroids


@KEYPOINT_CODECS.register_module()
class CentroidUDPHeatmap(UDPHeatmap):
    """:class:`mmpose.codecs.UDPHeatmap` (Gaussian heatmaps only) that decodes either as MMPose does
    (``decode='peak'``: the peak, refined by DARK-UDP) or as the heatmap's centre of mass around the peak
    (``decode='centroid'``, window half-side ``centroid_radius`` heatmap pixels, weights above
    ``centroid_floor`` times the peak value). Encoding (the training targets) is MMPose's, unchanged."""

    def __init__(self, *args, decode: str = 'peak', centroid_radius: int = 3, centroid_floor: float = 0.2,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.heatmap_type != 'gaussian':
            raise ValueError(f'CentroidUDPHeatmap: only heatmap_type="gaussian" has a centroid, got '
                             f'{self.heatmap_type!r}')
        if decode not in ('peak', 'centroid'):
            raise ValueError(f'CentroidUDPHeatmap: decode must be "peak" or "centroid", got {decode!r}')
        if int(centroid_radius) < 1 or not 0.0 <= float(centroid_floor) < 1.0:
            raise ValueError(f'CentroidUDPHeatmap: need centroid_radius >= 1 and 0 <= centroid_floor < 1, got '
                             f'{centroid_radius} and {centroid_floor}')
        self.decode_mode = decode
        self.centroid_radius = int(centroid_radius)
        self.centroid_floor = float(centroid_floor)

    def decode(self, encoded: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if self.decode_mode == 'peak':
            return super().decode(encoded)
        peaks, scores = get_heatmap_maximum(encoded)
        keypoints = heatmap_centroids(encoded, peaks, self.centroid_radius, self.centroid_floor)
        width, height = self.heatmap_size
        keypoints = keypoints / [width - 1, height - 1] * self.input_size
        return keypoints[None].astype(np.float32), scores[None]
