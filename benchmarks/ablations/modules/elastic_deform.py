"""``RandomElasticDeform``: a per-axis scale and a smooth elastic field, applied to the image and its keypoints.

Research only (ablation ``cascade_global-shape``: measured, not adopted; see benchmarks/RESULTS.md). Configs
reach it with ``custom_imports = dict(imports=['cldetection', 'benchmarks.ablations.modules.elastic_deform'])``,
run from the repository root.
"""
from __future__ import annotations

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmpose.registry import TRANSFORMS


def random_deformation_field(shape: tuple[int, int], axis_scale: float, elastic_sd: float, grid: int,
                             rng: np.random.Generator) -> np.ndarray:
    """A random smooth displacement field (``h x w x 2``, pixels) for :func:`deform_image_and_points`.

    The field is an independent scale of each axis about the image centre (factors in ``1 +- axis_scale``) plus
    an elastic part: ``grid x grid`` control-point displacements (Gaussian, SD ``elastic_sd`` times the image's
    longer side) upsampled bicubically to every pixel.
    """
    height, width = shape
    scale = rng.uniform(1.0 - axis_scale, 1.0 + axis_scale, 2)  # (x, y) magnification of the output
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    centre = np.array([(width - 1) / 2, (height - 1) / 2], dtype=np.float32)
    # output pixel q shows input pixel q + d(q): magnification s means d = (1/s - 1)(q - c)
    field = np.stack([(1.0 / scale[0] - 1.0) * (xs - centre[0]), (1.0 / scale[1] - 1.0) * (ys - centre[1])], -1)
    if elastic_sd > 0 and grid >= 2:
        control = rng.normal(0.0, elastic_sd * max(height, width), (grid, grid, 2)).astype(np.float32)
        field += cv2.resize(control, (width, height), interpolation=cv2.INTER_CUBIC)
    return field.astype(np.float32)


def deform_image_and_points(image: np.ndarray, points: np.ndarray,
                            field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` by ``field`` (output pixel q shows input pixel q + field[q]) and move ``points`` with it.

    A point p of the input lands where q + field(q) = p; the field is smooth and small, so the fixed-point
    iteration q <- p - field(q) converges in a few steps (field sampled bilinearly, clamped at the border).
    Pixels from outside the image are 0.
    """
    height, width = field.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    warped = cv2.remap(image, xs + field[..., 0], ys + field[..., 1], interpolation=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT)
    flat = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    moved = flat.copy()
    for _ in range(10 if len(flat) else 0):
        qx = np.clip(moved[:, 0], 0, width - 1)[None]
        qy = np.clip(moved[:, 1], 0, height - 1)[None]
        sampled = cv2.remap(field, qx, qy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]
        moved = flat - sampled
    return warped, moved.reshape(np.shape(points))


@TRANSFORMS.register_module()
class RandomElasticDeform(BaseTransform):
    """Random per-axis scale and smooth elastic deformation of the network input and its keypoints.

    The shape augmentation of the Spatial Configuration Net recipe (per-axis scale +-20 %, elastic
    deformation), which MMPose's rigid ``RandomBBoxTransform`` cannot do. Place it after ``TopdownAffine``: it
    deforms the small network input (cheap) and ``transformed_keypoints``, which ``GenerateTarget`` encodes;
    the original ``keypoints`` (and the cascade's source image, kept before the crop) stay as they are.

    Args:
        axis_scale: each axis is scaled by a factor drawn from ``1 +- axis_scale`` about the input's centre.
        elastic_sd: SD of the control-point displacements, as a fraction of the input's longer side.
        grid: control points per side of the elastic field.
        prob: probability of deforming a sample.

    Draws from NumPy's global generator (seeded by MMEngine per run and worker), as ``RandomXRayIntensity``.
    """

    def __init__(self, axis_scale: float = 0.1, elastic_sd: float = 0.01, grid: int = 5, prob: float = 0.5) -> None:
        if not 0 <= axis_scale < 0.5 or elastic_sd < 0 or not 0 <= prob <= 1:
            raise ValueError(f'RandomElasticDeform: need 0 <= axis_scale < 0.5, elastic_sd >= 0, 0 <= prob <= 1; '
                             f'got {axis_scale}, {elastic_sd}, {prob}')
        self.axis_scale, self.elastic_sd, self.grid, self.prob = float(axis_scale), float(elastic_sd), int(grid), prob

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results['img']
        rng = np.random.default_rng(np.random.randint(2 ** 31))
        field = random_deformation_field(img.shape[:2], self.axis_scale, self.elastic_sd, self.grid, rng)
        key = 'transformed_keypoints' if results.get('transformed_keypoints') is not None else 'keypoints'
        points = results.get(key)
        if points is None or np.ndim(points) < 2:  # (TopdownAffine leaves a 0-d array when there are none)
            results['img'] = deform_image_and_points(img, np.zeros((0, 2)), field)[0]
            return results
        results['img'], moved = deform_image_and_points(img, points[..., :2], field)
        results[key] = np.concatenate([moved, points[..., 2:]], axis=-1).astype(points.dtype)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(axis_scale={self.axis_scale}, elastic_sd={self.elastic_sd}, '
                f'grid={self.grid}, prob={self.prob})')
