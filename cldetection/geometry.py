"""Coordinate geometry of the cascade: area downscaling and the patch warps, shared by training and prediction.

A patch is an ``h x w`` crop of an image at some pixels per patch pixel, centred on a point, cut with the same
UDP warp MMPose's ``TopdownAffine(use_udp=True)`` uses, so MMPose's UDP codec encodes and decodes patch coordinates
exactly as it does for top-down inputs.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
from mmpose.structures.bbox import get_udp_warp_matrix

def area_downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` reduced ``factor`` times by area averaging (cv2.INTER_AREA); ``factor`` 1 returns it as is.

    The image is first cut to a multiple of ``factor`` so that output pixel ``i`` averages input pixels
    ``factor*i .. factor*i + factor-1`` exactly: source coordinate ``x`` is then ``(x + 0.5) / factor - 0.5``.
    """
    if factor <= 1:
        return image
    height, width = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    return cv2.resize(image[:height, :width], (width // factor, height // factor), interpolation=cv2.INTER_AREA)


def to_reduced(points: np.ndarray, factor: int) -> np.ndarray:
    """Pixel coordinates of the full image -> those of its ``area_downscale(.., factor)`` copy."""
    return (points + 0.5) / factor - 0.5


def from_reduced(points: np.ndarray, factor: int) -> np.ndarray:
    """Inverse of :func:`to_reduced`."""
    return (points + 0.5) * factor - 0.5


def patch_warp_matrix(center: np.ndarray, extent: float, rotation: float, size: tuple[int, int]) -> np.ndarray:
    """The 2 x 3 UDP warp from image pixels to a ``size = (w, h)`` patch covering ``extent`` pixels (square).

    The same warp MMPose's ``TopdownAffine(use_udp=True)`` uses for a box of that size, so MMPose's UDP codec
    encodes and decodes patch coordinates exactly as it does for top-down inputs.
    """
    return get_udp_warp_matrix(np.asarray(center, dtype=np.float32),
                               np.array([extent * size[0] / max(size), extent * size[1] / max(size)],
                                        dtype=np.float32),
                               float(rotation), output_size=size)


def patch_to_image(decoded: np.ndarray, centers: np.ndarray, extent: float, size: tuple[int, int]) -> np.ndarray:
    """Codec-decoded patch coordinates (``P x 2``) of unrotated patches -> image pixels.

    MMPose's UDP codec decodes to ``heatmap / (heatmap_size - 1) * input_size`` and MMPose maps that back with
    ``p / input_size * box + center - box / 2`` (``TopdownPoseEstimator.add_pred_to_datasample``); the two
    together invert the UDP warp exactly, so the same formula serves patches.
    """
    size_arr = np.array(size, dtype=np.float64)
    box = extent * size_arr / size_arr.max()
    return decoded / size_arr * box + centers - 0.5 * box


def cut_patches(image: np.ndarray, centers: np.ndarray, extent: float | np.ndarray, size: tuple[int, int],
                rotations: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Patches (``P x h x w``, dtype of ``image``) around ``centers`` (``P x 2``) and their warp matrices.

    ``extent``: image pixels each patch covers (one value, or one per patch); pixels outside the image are 0.
    """
    count = len(centers)
    extents = np.broadcast_to(np.asarray(extent, dtype=np.float64), (count,))
    rotations = np.zeros(count) if rotations is None else rotations
    matrices = np.stack([patch_warp_matrix(c, e, r, size) for c, e, r in zip(centers, extents, rotations)]) \
        if count else np.zeros((0, 2, 3))
    patches = [cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
               for m in matrices]
    return (np.stack(patches) if count else np.zeros((0, size[1], size[0]), image.dtype)), matrices
