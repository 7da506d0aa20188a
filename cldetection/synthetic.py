"""Synthetic CL-Detection data: procedurally drawn skull-like X-rays with 38 landmarks, in the challenge format.

``python -m cldetection.synthetic --out DIR --num-images N --seed S`` writes ``DIR/train_stack.mha`` (slices
zero-padded to 2400 x 2880 x 3 uint8, like the real stack) and ``DIR/train-gt.json`` (spacing 0.1 mm). Tests and
the demo use it, so the whole pipeline runs without the real images.

How an image is made: every landmark, and every extra control point ("anchor") of the drawn outlines, has a place
in one template (normalised ``(x / width, y / height)``; the layout follows the mean of the real training
landmarks, face to the right). Per image we vary the anatomy in template space (lower-face height, mandible
length and rotation, maxilla position, nose size, vault size, soft-tissue thickness), jitter each point, and apply
a random similarity transform. The structures are then drawn *from those points*, so labels and pixels always
agree: landmarks sit on corners, tips, curve extremes, junctions and cup centres of the drawing (nasion at the
frontal/nasal-bone corner, sella in the middle of the sella cup, porion on top of the ear-rod ring, incisor tips
and apices, ANS/PNS at the palate's tips, ...). The drawing accumulates X-ray attenuation (overlapping bone adds
up), then gets random texture, exposure, gamma, blur and noise.

Everything derives from one ``numpy`` generator per image, seeded by ``(seed, image index)``: the same seed gives
the same bytes, and image ``i`` is the same whatever the number of images.
"""
from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from .challenge_io import CHALLENGE_SLICE_SHAPE, ground_truth_document, write_json_atomic, write_stack
from .errors import check_output_file, fail, run_cli
from .landmarks import NUM_CL2023_LANDMARKS

logger = logging.getLogger(__name__)

#: Pixel spacing written to the ground truth (mm per pixel), as in the real data.
SYNTHETIC_SPACING_MM = 0.1
#: Default content size (height, width) before padding: about a third of the real 2400 x 1935, same aspect.
DEFAULT_CONTENT_SIZE: tuple[int, int] = (800, 640)
MIN_CONTENT_SIDE = 128
STACK_FILE_NAME = 'train_stack.mha'
GT_FILE_NAME = 'train-gt.json'

# ------------------------------------------------------------------------------------------ the template
#: Landmark layout (x / width, y / height) before ``_LAYOUT_SHIFT``; names after ISBI 2015 where known.
LANDMARK_LAYOUT: dict[int, tuple[float, float]] = {
    1: (0.417, 0.440),   # sella: centre of the sella cup
    2: (0.720, 0.407),   # nasion: corner between frontal bone and nasal bone
    3: (0.660, 0.508),   # orbitale: lowest point of the orbit rim
    4: (0.310, 0.511),   # porion: top of the ear-rod ring
    5: (0.712, 0.637),   # subspinale (A point): deepest point of the maxilla's front concavity
    6: (0.697, 0.776),   # supramentale (B point): deepest point of the chin's front concavity
    7: (0.712, 0.829),   # pogonion: most anterior point of the bony chin
    8: (0.668, 0.860),   # menton: lowest point of the symphysis
    9: (0.696, 0.852),   # gnathion: between pogonion and menton on the chin contour
    10: (0.379, 0.724),  # gonion: mandibular angle
    11: (0.728, 0.702),  # lower incisor tip
    12: (0.748, 0.716),  # upper incisor tip
    13: (0.810, 0.680),  # upper lip: most anterior point
    14: (0.800, 0.748),  # lower lip: most anterior point
    15: (0.776, 0.625),  # subnasale: corner between columella and upper lip
    16: (0.758, 0.835),  # soft-tissue pogonion
    17: (0.499, 0.602),  # posterior nasal spine: back tip of the palate
    18: (0.728, 0.602),  # anterior nasal spine: front tip of the palate
    19: (0.346, 0.556),  # articulare: posterior ramus border meets the clivus
    20: (0.648, 0.818),  # most posterior point of the symphysis' lingual contour
    21: (0.691, 0.630),  # upper incisor root apex
    22: (0.680, 0.778),  # lower incisor root apex
    23: (0.805, 0.600),  # columella, below the nose tip
    24: (0.498, 0.559),  # lower tip of the pterygomaxillary fissure (teardrop)
    25: (0.362, 0.499),  # condylion: top of the condyle
    26: (0.845, 0.575),  # pronasale: nose tip
    27: (0.290, 0.580),  # basion: tip of the clivus
    28: (0.496, 0.493),  # top of the pterygomaxillary fissure
    29: (0.197, 0.575),  # opisthion: lower end of the occipital bone
    30: (0.792, 0.655),  # soft-tissue A point
    31: (0.775, 0.775),  # soft-tissue B point
    32: (0.732, 0.872),  # soft-tissue gnathion
    33: (0.678, 0.890),  # soft-tissue menton
    34: (0.790, 0.355),  # soft-tissue glabella
    35: (0.745, 0.428),  # soft-tissue nasion
    36: (0.518, 0.899),  # front-top corner of the hyoid body
    37: (0.618, 0.688),  # upper first molar: mesial cusp tip
    38: (0.640, 0.694),  # lower first molar: mesial occlusal corner
}
assert len(LANDMARK_LAYOUT) == NUM_CL2023_LANDMARKS

#: Control points of the drawn outlines: (x, y, parent landmark). An anchor with a parent moves rigidly with that
#: landmark's jitter, so small shapes (sella cup, orbit, ear ring, teeth) keep their landmark at the same feature.
_ANCHORS: dict[str, tuple[float, float, int]] = {
    # sella cup, from the tuberculum round to the dorsum
    'sella_tub': (0.447, 0.427, 1), 'sella_ant': (0.442, 0.455, 1), 'sella_floor': (0.417, 0.464, 1),
    'sella_post': (0.393, 0.452, 1), 'sella_dorsum': (0.390, 0.420, 1),
    # anterior cranial base, clivus
    'acb_1': (0.500, 0.424, 0), 'acb_2': (0.580, 0.411, 0), 'acb_3': (0.655, 0.405, 0),
    'clivus_front': (0.405, 0.476, 0), 'clivus_low': (0.318, 0.578, 0),
    # cranial vault (outer table) from the occiput over the top to the glabella
    'vault_occ1': (0.135, 0.520, 0), 'vault_occ2': (0.100, 0.410, 0), 'vault_par1': (0.135, 0.260, 0),
    'vault_par2': (0.260, 0.135, 0), 'vault_top': (0.430, 0.085, 0), 'vault_fr1': (0.600, 0.115, 0),
    'vault_fr2': (0.720, 0.205, 0), 'vault_fr3': (0.770, 0.300, 0), 'vault_glab': (0.766, 0.358, 0),
    'nasal_mid': (0.748, 0.445, 0), 'nasal_tip': (0.770, 0.485, 0),
    # orbit rim (attached to orbitale), ear-rod ring (attached to porion)
    'orbit_front': (0.692, 0.470, 3), 'orbit_top': (0.662, 0.428, 3), 'orbit_back': (0.628, 0.468, 3),
    'ear_front': (0.338, 0.533, 4), 'ear_bottom': (0.310, 0.555, 4), 'ear_back': (0.282, 0.533, 4),
    # pterygomaxillary fissure
    'ptm_back_low': (0.488, 0.532, 24), 'ptm_front_low': (0.509, 0.532, 24),
    'ptm_back_high': (0.485, 0.506, 28), 'ptm_front_high': (0.510, 0.504, 28),
    # palate and maxilla
    'palate_top1': (0.560, 0.594, 0), 'palate_top2': (0.660, 0.594, 0),
    'palate_bottom1': (0.560, 0.610, 0), 'palate_bottom2': (0.665, 0.614, 0),
    'maxilla_ans_low': (0.720, 0.617, 0), 'prosthion': (0.738, 0.690, 0), 'maxilla_alveolus': (0.660, 0.686, 0),
    'maxilla_tuber': (0.560, 0.668, 0), 'maxilla_back': (0.505, 0.632, 0),
    'soft_palate1': (0.462, 0.640, 0), 'soft_palate2': (0.440, 0.676, 0),
    # mandible, counter-clockwise from the condyle
    'condyle_front': (0.380, 0.516, 25), 'condyle_back': (0.343, 0.521, 25), 'ramus_back': (0.356, 0.640, 0),
    'antegonial': (0.450, 0.772, 0), 'mandible_low': (0.560, 0.836, 0), 'chin_front': (0.708, 0.801, 0),
    'infradentale': (0.716, 0.728, 0), 'alveolar_crest1': (0.660, 0.712, 0), 'alveolar_crest2': (0.540, 0.706, 0),
    'retromolar': (0.470, 0.690, 0), 'ramus_front': (0.455, 0.620, 0), 'coronoid': (0.470, 0.555, 0),
    'sigmoid_notch': (0.420, 0.585, 0), 'condyle_neck': (0.392, 0.548, 25),
    'lingual_crest': (0.672, 0.735, 0), 'lingual_1': (0.662, 0.782, 0), 'lingual_2': (0.655, 0.846, 0),
    # molars and premolars (attached to the molar landmarks)
    'um_valley': (0.600, 0.684, 37), 'um_distal': (0.579, 0.689, 37), 'um_distal_neck': (0.577, 0.660, 37),
    'um_mesial_neck': (0.621, 0.660, 37), 'um_root1': (0.583, 0.625, 37), 'um_root2': (0.614, 0.627, 37),
    'um2_mesial': (0.573, 0.687, 37), 'um2_distal': (0.535, 0.684, 37), 'um2_distal_neck': (0.536, 0.658, 37),
    'um2_mesial_neck': (0.572, 0.659, 37), 'um2_root': (0.553, 0.626, 37),
    'upm1_tip': (0.640, 0.690, 37), 'upm1_apex': (0.642, 0.622, 37),
    'upm2_tip': (0.668, 0.691, 37), 'upm2_apex': (0.672, 0.620, 37),
    'lm_valley': (0.620, 0.690, 38), 'lm_distal': (0.598, 0.694, 38), 'lm_distal_neck': (0.599, 0.722, 38),
    'lm_mesial_neck': (0.640, 0.722, 38), 'lm_root1': (0.604, 0.765, 38), 'lm_root2': (0.634, 0.766, 38),
    'lm2_mesial': (0.592, 0.695, 38), 'lm2_distal': (0.554, 0.698, 38), 'lm2_distal_neck': (0.556, 0.724, 38),
    'lm2_mesial_neck': (0.592, 0.723, 38), 'lm2_root': (0.573, 0.764, 38),
    'lpm1_tip': (0.660, 0.697, 38), 'lpm1_apex': (0.658, 0.765, 38),
    'lpm2_tip': (0.685, 0.699, 38), 'lpm2_apex': (0.680, 0.762, 38),
    # hyoid, cervical vertebrae, airway
    'hyoid_front_low': (0.522, 0.915, 36), 'hyoid_low': (0.490, 0.926, 36), 'hyoid_back': (0.462, 0.915, 36),
    'hyoid_top': (0.478, 0.900, 36), 'hyoid_horn': (0.400, 0.888, 36),
    'c2_dens': (0.246, 0.585, 0), 'c2_front_top': (0.272, 0.605, 0), 'c2_front_low': (0.283, 0.742, 0),
    'c2_back_low': (0.212, 0.750, 0), 'c2_back_top': (0.220, 0.605, 0),
    'c3_a': (0.214, 0.775, 0), 'c3_b': (0.280, 0.768, 0), 'c3_c': (0.286, 0.832, 0), 'c3_d': (0.218, 0.838, 0),
    'c4_a': (0.219, 0.860, 0), 'c4_b': (0.287, 0.853, 0), 'c4_c': (0.293, 0.917, 0), 'c4_d': (0.224, 0.922, 0),
    'c5_a': (0.224, 0.944, 0), 'c5_b': (0.293, 0.938, 0), 'c5_c': (0.298, 1.000, 0), 'c5_d': (0.228, 1.005, 0),
    'airway_1': (0.400, 0.620, 0), 'airway_2': (0.345, 0.700, 0), 'airway_3': (0.333, 0.800, 0),
    'airway_4': (0.340, 0.900, 0), 'airway_5': (0.352, 1.060, 0),
    # soft-tissue silhouette: neck, scalp, nose, lips, chin
    'neck_back_low': (-0.050, 1.080, 0), 'neck_back': (0.040, 0.760, 0), 'nape': (0.060, 0.620, 0),
    'scalp_occ1': (0.090, 0.520, 0), 'scalp_occ2': (0.062, 0.400, 0), 'scalp_par1': (0.102, 0.245, 0),
    'scalp_par2': (0.245, 0.105, 0), 'scalp_top': (0.430, 0.058, 0), 'scalp_fr1': (0.615, 0.088, 0),
    'scalp_fr2': (0.745, 0.185, 0), 'scalp_fr3': (0.788, 0.285, 0),
    'nose_dorsum1': (0.790, 0.480, 0), 'nose_dorsum2': (0.825, 0.535, 0), 'stomion': (0.784, 0.713, 0),
    'submental': (0.600, 0.896, 0), 'neck_front': (0.530, 0.935, 0), 'neck_front_low': (0.520, 1.080, 0),
}

#: Moves the whole layout up and left so that the rotated, scaled and shifted face stays inside the image.
_LAYOUT_SHIFT = np.array([-0.03, -0.05])

_LOWER_FACE_SOFT = {14, 16, 31, 32, 33, 'submental', 'neck_front'}
#: Shape-mode groups: points that move together when the anatomy varies.
_MANDIBLE = {6, 7, 8, 9, 10, 11, 20, 22, 36, 38, 'ramus_back', 'antegonial', 'mandible_low', 'chin_front',
             'infradentale', 'alveolar_crest1', 'alveolar_crest2', 'retromolar', 'ramus_front', 'coronoid',
             'sigmoid_notch', 'lingual_crest', 'lingual_1', 'lingual_2'} | _LOWER_FACE_SOFT
_MAXILLA = {5, 12, 13, 15, 17, 18, 21, 23, 26, 30, 37, 'palate_top1', 'palate_top2', 'palate_bottom1',
            'palate_bottom2', 'maxilla_ans_low', 'prosthion', 'maxilla_alveolus', 'maxilla_tuber', 'maxilla_back',
            'soft_palate1', 'soft_palate2', 'nose_dorsum2', 'stomion'}
_NOSE = {23, 26, 'nose_dorsum2'}
_VAULT = {29, 'vault_occ1', 'vault_occ2', 'vault_par1', 'vault_par2', 'vault_top', 'scalp_occ1', 'scalp_occ2',
          'scalp_par1', 'scalp_par2', 'scalp_top'}
_SOFT_PROFILE = {13, 14, 15, 16, 23, 26, 30, 31, 32, 33, 34, 35, 'nose_dorsum1', 'nose_dorsum2', 'stomion',
                 'submental', 'scalp_fr3'}

_KEYS: list[int | str] = list(LANDMARK_LAYOUT) + list(_ANCHORS)
_INDEX: dict[int | str, int] = {key: i for i, key in enumerate(_KEYS)}
_TEMPLATE = np.array([LANDMARK_LAYOUT[k] for k in LANDMARK_LAYOUT] + [a[:2] for a in _ANCHORS.values()],
                     dtype=np.float64) + _LAYOUT_SHIFT
#: For every point, the row whose jitter it takes: itself, or its parent landmark.
_JITTER_SOURCE = np.array([_INDEX[k] if isinstance(k, int) or not _ANCHORS[k][2] else _INDEX[_ANCHORS[k][2]]
                           for k in _KEYS])


def _rows(group: set) -> np.ndarray:
    return np.array(sorted(_INDEX[k] for k in group))


def _rotation(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _vary_anatomy(rng: np.random.Generator, pts: np.ndarray, width: int, height: int) -> None:
    """Per-image anatomical variation, in place, on template points in pixels (before the pose transform)."""
    palate_y = pts[_INDEX[18], 1]
    lower = pts[:, 1] > palate_y
    pts[lower, 1] = palate_y + (pts[lower, 1] - palate_y) * rng.uniform(0.94, 1.06)  # lower-face height
    vault = _rows(_VAULT)
    sella = pts[_INDEX[1]].copy()
    pts[vault] = sella + (pts[vault] - sella) * rng.uniform(0.95, 1.05)
    maxilla = _rows(_MAXILLA)
    pts[maxilla] += rng.uniform(-1, 1, 2) * [0.010 * width, 0.008 * height]
    nose = _rows(_NOSE)
    subnasale = pts[_INDEX[15]].copy()
    pts[nose] = subnasale + (pts[nose] - subnasale) * rng.uniform(0.85, 1.15)
    # mandible: longer or shorter body (scaling forward from the condyle), opened or closed about the condyle
    mandible = _rows(_MANDIBLE)
    condyle = pts[_INDEX[25]].copy()
    pts[mandible, 0] = condyle[0] + (pts[mandible, 0] - condyle[0]) * rng.uniform(0.95, 1.05)
    pts[mandible] = condyle + (pts[mandible] - condyle) @ _rotation(rng.uniform(-2.5, 2.5)).T
    pts[_rows(_SOFT_PROFILE), 0] += rng.uniform(-0.008, 0.012) * width  # soft-tissue thickness


def _pose(rng: np.random.Generator, pts: np.ndarray, width: int, height: int, margin: float) -> np.ndarray:
    """Random similarity transform (shift ~8 %, scale ~10 %, rotation ~8 degrees) keeping landmarks inside.

    Drawn until every landmark lies ``margin`` (fraction of the size) inside the image; after 100 misses (never
    seen) the points stay where they are, which the layout keeps well inside.
    """
    landmarks = pts[:NUM_CL2023_LANDMARKS]
    centre = landmarks.mean(axis=0)
    low = np.array([margin * width, margin * height])
    high = np.array([(1 - margin) * width, (1 - margin) * height])
    for _ in range(100):
        matrix = rng.uniform(0.9, 1.1) * _rotation(rng.uniform(-8.0, 8.0))
        shift = rng.uniform(-0.08, 0.08, 2) * [width, height]
        moved = centre + shift + (pts - centre) @ matrix.T
        if np.all(moved[:NUM_CL2023_LANDMARKS] >= low) and np.all(moved[:NUM_CL2023_LANDMARKS] <= high):
            return moved
    return pts


def synthetic_points(rng: np.random.Generator, image_size: tuple[int, int]) -> dict[int | str, np.ndarray]:
    """Landmark and anchor positions (pixels) for one image: template, anatomy, jitter, pose."""
    height, width = image_size
    pts = _TEMPLATE * [width, height]
    _vary_anatomy(rng, pts, width, height)
    jitter = np.clip(rng.normal(0.0, 0.0035 * min(width, height), pts.shape), -0.01 * width, 0.01 * width)
    pts += jitter[_JITTER_SOURCE]
    # dental compensation: whatever the jaws do, the lower incisor tip stays behind the upper one (positive
    # overjet), as in most patients; this also keeps the two tips from merging into one blob
    upper_tip, lower_tip = _INDEX[12], _INDEX[11]
    pts[lower_tip, 0] = min(pts[lower_tip, 0], pts[upper_tip, 0] - 0.012 * width)
    pts = _pose(rng, pts, width, height, margin=0.02)
    return dict(zip(_KEYS, pts))


# ------------------------------------------------------------------------------------------------ drawing
_SHIFT_BITS = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 px, so outlines pass through the labels exactly


def _catmull_rom(points: np.ndarray, closed: bool = False) -> np.ndarray:
    """Centripetal Catmull-Rom spline through ``points`` (N x 2 pixels), sampled about every 2 px."""
    if len(points) < 3 and not closed:
        return points
    if closed:
        ext = np.concatenate([points[-1:], points, points[:2]])
    else:
        ext = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    curve = [points[:1]]
    for i in range(len(ext) - 3):
        p0, p1, p2, p3 = ext[i:i + 4]
        d = [max(np.linalg.norm(b - a) ** 0.5, 1e-6) for a, b in ((p0, p1), (p1, p2), (p2, p3))]
        t0, t1, t2, t3 = 0.0, d[0], d[0] + d[1], d[0] + d[1] + d[2]
        n = int(np.clip(np.linalg.norm(p2 - p1) / 2, 2, 80))
        t = np.linspace(t1, t2, n + 1)[1:, None]
        a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        curve.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    return np.concatenate(curve)


class _Canvas:
    """Accumulates X-ray attenuation: each structure adds its density where it is drawn (anti-aliased)."""

    def __init__(self, points: dict[int | str, np.ndarray], height: int, width: int) -> None:
        self.points = points
        self.density = np.zeros((height, width), dtype=np.float32)
        self.scale = min(height, width) / 640  # line widths are tuned for a 640 px wide image

    def path(self, *pieces: Sequence[int | str]) -> np.ndarray:
        """Smooth spline pieces through named points, joined with corners where one piece ends and the next starts."""
        curves = [_catmull_rom(np.array([self.points[k] for k in piece])) for piece in pieces]
        return np.concatenate([curves[0]] + [c[1:] for c in curves[1:]])

    def smooth_loop(self, keys: Sequence[int | str]) -> np.ndarray:
        return _catmull_rom(np.array([self.points[k] for k in keys]), closed=True)

    def _draw(self, curve: np.ndarray, weight: float, thickness: int | None, closed: bool) -> None:
        pad = (thickness or 0) + 2
        x0, y0 = np.maximum(np.floor(curve.min(axis=0) - pad).astype(int), 0)
        x1, y1 = np.ceil(curve.max(axis=0) + pad).astype(int) + 1
        x1, y1 = min(x1, self.density.shape[1]), min(y1, self.density.shape[0])
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        fixed = np.rint((curve - [x0, y0]) * (1 << _SHIFT_BITS)).astype(np.int32)
        if thickness is None:
            cv2.fillPoly(mask, [fixed], 255, cv2.LINE_AA, _SHIFT_BITS)
        else:
            cv2.polylines(mask, [fixed], closed, 255, thickness, cv2.LINE_AA, _SHIFT_BITS)
        self.density[y0:y1, x0:x1] += mask.astype(np.float32) * (weight / 255)

    def fill(self, curve: np.ndarray, weight: float) -> None:
        self._draw(curve, weight, None, True)

    def stroke(self, curve: np.ndarray, width: float, weight: float, closed: bool = False) -> None:
        self._draw(curve, weight, max(1, round(width * self.scale)), closed)

    def band(self, curve: np.ndarray, width: float) -> np.ndarray:
        """Polygon of a band ``width`` px wide (at 640 px) along ``curve``, inside it when it runs clockwise on screen."""
        tangent = np.gradient(curve, axis=0)
        normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
        return np.concatenate([curve, (curve - normal * width * self.scale)[::-1]])


def _tooth(apex: np.ndarray, tip: np.ndarray, crown_width: float,
           pointed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Outline of a tooth from root apex to incisal tip, and of its crown (enamel).

    ``pointed``: an incisor, sharp at its tip; otherwise a premolar with a broad occlusal surface.
    """
    axis = tip - apex
    normal = np.array([-axis[1], axis[0]])
    near_tip = 0.6 * crown_width if pointed else 0.9 * crown_width
    # (fraction along the axis, half-width as a fraction of the length), apex to tip on one side
    side = [(0.0, 0.0), (0.12, 0.045), (0.45, 0.085), (0.6, 0.10), (0.8, crown_width), (0.95, near_tip), (1.0, 0.0)]

    def curve(sign: float) -> np.ndarray:
        return _catmull_rom(np.array([apex + s * axis + sign * w * normal for s, w in side]))

    first, second = curve(1.0), curve(-1.0)[::-1]
    outline = np.concatenate([first, second[1:]])
    neck = apex + 0.6 * axis
    cut_first = np.argmin(np.linalg.norm(first - neck, axis=1))
    cut_second = np.argmin(np.linalg.norm(second - neck, axis=1))
    return outline, np.concatenate([first[cut_first:], second[1:cut_second + 1]])


def _draw_skull(canvas: _Canvas) -> None:
    """Draw every structure from the (already varied and posed) points."""
    c, p = canvas, canvas.points
    # soft tissue: one silhouette from the neck over the scalp, down the facial profile, back under the chin
    silhouette = c.path(('neck_back_low', 'neck_back', 'nape', 'scalp_occ1', 'scalp_occ2', 'scalp_par1',
                         'scalp_par2', 'scalp_top', 'scalp_fr1', 'scalp_fr2', 'scalp_fr3', 34, 35, 'nose_dorsum1',
                         'nose_dorsum2', 26, 23, 15), (15, 30, 13, 'stomion'),
                        ('stomion', 14, 31, 16, 32, 33, 'submental', 'neck_front', 'neck_front_low'),
                        ('neck_front_low', 'neck_back_low'))
    c.fill(silhouette, 0.3)
    c.stroke(c.path(('airway_1', 'airway_2', 'airway_3', 'airway_4', 'airway_5')), 20, -0.35)
    c.stroke(c.path((17, 'soft_palate1', 'soft_palate2')), 12, 0.2)
    # cranial vault: a bony band with brighter inner and outer tables
    vault = c.path((29, 'vault_occ1', 'vault_occ2', 'vault_par1', 'vault_par2', 'vault_top', 'vault_fr1',
                    'vault_fr2', 'vault_fr3', 'vault_glab', 2))
    band = c.band(vault, 15)
    c.fill(band, 0.5)
    c.stroke(vault, 3, 0.35)
    c.stroke(band[len(vault):], 3, 0.3)
    c.stroke(c.path((2, 'nasal_mid', 'nasal_tip')), 4, 0.6)
    # cranial base: anterior base, sella cup, clivus ending at basion, with articulare at its lower corner
    c.stroke(c.path(('sella_tub', 'acb_1', 'acb_2', 'acb_3')), 5, 0.5)
    c.stroke(c.path(('sella_tub', 'sella_ant', 'sella_floor', 'sella_post', 'sella_dorsum')), 4, 0.75)
    c.fill(c.path(('sella_dorsum', 27), (27, 'clivus_low', 19), (19, 'clivus_front', 'sella_dorsum')), 0.55)
    # orbit rim, ear-rod ring (metal: brightest), pterygomaxillary fissure
    c.stroke(c.smooth_loop((3, 'orbit_back', 'orbit_top', 'orbit_front')), 3, 0.45, closed=True)
    c.stroke(c.smooth_loop((4, 'ear_front', 'ear_bottom', 'ear_back')), 3, 1.3, closed=True)
    c.stroke(c.path((24, 'ptm_back_low', 'ptm_back_high', 28, 'ptm_front_high', 'ptm_front_low', 24)), 2, 0.5)
    # maxilla with the palate spindle between PNS and ANS
    c.fill(c.path((17, 'palate_top1', 'palate_top2', 18), (18, 'maxilla_ans_low', 5, 'prosthion'),
                  ('prosthion', 'maxilla_alveolus', 'maxilla_tuber', 'maxilla_back', 17)), 0.4)
    c.fill(c.path((17, 'palate_top1', 'palate_top2', 18), (18, 'palate_bottom2', 'palate_bottom1', 17)), 0.55)
    # mandible: body, cortical lower border, lingual contour of the symphysis
    outer_border = ('condyle_neck', 'condyle_front', 25, 'condyle_back', 19, 'ramus_back', 10, 'antegonial',
                    'mandible_low', 8, 9, 7, 'chin_front', 6, 'infradentale')
    c.fill(c.path(outer_border, ('infradentale', 'alveolar_crest1', 'alveolar_crest2', 'retromolar'),
                  ('retromolar', 'ramus_front', 'coronoid'), ('coronoid', 'sigmoid_notch', 'condyle_neck')), 0.45)
    border = c.path(outer_border)
    c.stroke(border[np.argmin(np.linalg.norm(border - p[10], axis=1)):], 4, 0.35)  # cortex from gonion forward
    c.stroke(c.path(('lingual_crest', 'lingual_1', 20, 'lingual_2', 8)), 3, 0.4)
    # teeth: incisors (root apex to tip), molars with the landmark at the mesial occlusal corner, premolars
    for apex, tip in ((21, 12), (22, 11)):
        outline, crown = _tooth(p[apex], p[tip], 0.12)
        c.fill(outline, 0.8)
        c.fill(crown, 0.35)
    molars = (((37, 'um_valley', 'um_distal', 'um_distal_neck', 'um_mesial_neck'),
               (('um_distal_neck', 'um_root1'), ('um_mesial_neck', 'um_root2'))),
              (('um2_mesial', 'um2_distal', 'um2_distal_neck', 'um2_mesial_neck'),
               (('um2_distal_neck', 'um2_root'), ('um2_mesial_neck', 'um2_root'))),
              ((38, 'lm_valley', 'lm_distal', 'lm_distal_neck', 'lm_mesial_neck'),
               (('lm_distal_neck', 'lm_root1'), ('lm_mesial_neck', 'lm_root2'))),
              (('lm2_mesial', 'lm2_distal', 'lm2_distal_neck', 'lm2_mesial_neck'),
               (('lm2_distal_neck', 'lm2_root'), ('lm2_mesial_neck', 'lm2_root'))))
    for crown, roots in molars:
        c.fill(np.array([p[k] for k in crown]), 1.1)
        for root in roots:
            c.stroke(c.path(root), 6, 0.7)
    for tip, apex in (('upm1_tip', 'upm1_apex'), ('upm2_tip', 'upm2_apex'), ('lpm1_tip', 'lpm1_apex'),
                      ('lpm2_tip', 'lpm2_apex')):
        outline, crown = _tooth(p[apex], p[tip], 0.2, pointed=False)
        c.fill(outline, 0.65)
        c.fill(crown, 0.3)
    # hyoid, cervical vertebrae
    c.fill(c.path((36, 'hyoid_front_low', 'hyoid_low', 'hyoid_back', 'hyoid_top', 36)), 0.6)
    c.stroke(c.path(('hyoid_back', 'hyoid_horn')), 4, 0.35)
    c.fill(c.smooth_loop(('c2_dens', 'c2_front_top', 'c2_front_low', 'c2_back_low', 'c2_back_top')), 0.5)
    for v in 'c3', 'c4', 'c5':
        c.fill(c.smooth_loop([f'{v}_{s}' for s in 'abcd']), 0.5)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Zero-mean, unit-ish noise that varies over about ``shape / cells`` pixels."""
    h, w = shape
    grid = rng.standard_normal((max(2, round(cells * h / max(h, w))), max(2, round(cells * w / max(h, w)))))
    return cv2.resize(grid.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


def _expose(rng: np.random.Generator, density: np.ndarray) -> np.ndarray:
    """Turn attenuation into an 8-bit X-ray: texture, exposure, heel effect, gamma, blur, noise."""
    h, w = density.shape
    texture = 1 + 0.12 * _smooth_noise(rng, (h, w), 8) + 0.06 * _smooth_noise(rng, (h, w), 48)
    d = np.maximum(density, 0) * np.maximum(texture, 0)
    image = 1 - np.exp(-rng.uniform(1.3, 1.9) * d)
    heel = (1 + rng.uniform(-0.15, 0.15) * (np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :])
            + rng.uniform(-0.15, 0.15) * (np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]))
    fog = rng.uniform(0.03, 0.09)
    image = fog + (1 - fog) * image * heel
    image = np.clip(image, 0, 1) ** rng.uniform(0.75, 1.35)
    image = image * rng.uniform(0.82, 1.0) + rng.uniform(-0.02, 0.03)
    blur = rng.uniform(0.5, 1.4) * min(h, w) / 640
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), blur)
    image += rng.standard_normal((h, w), dtype=np.float32) * rng.uniform(0.006, 0.025)
    # at least 1: the content must never end in an all-zero row or column, which readers crop as padding
    return np.clip(np.rint(image * 255), 1, 255).astype(np.uint8)


def draw_synthetic_cephalogram(rng: np.random.Generator,
                               image_size: tuple[int, int] = DEFAULT_CONTENT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic lateral cephalogram: ``(H x W uint8 grey image, 38 x 2 float landmarks (x, y) in pixels)``."""
    height, width = image_size
    points = synthetic_points(rng, (height, width))
    canvas = _Canvas(points, height, width)
    _draw_skull(canvas)
    landmarks = np.array([points[k] for k in range(1, NUM_CL2023_LANDMARKS + 1)])
    return _expose(rng, canvas.density), landmarks


def _check_arguments(num_images: int, seed: int, image_size: tuple[int, int],
                     size_jitter: float) -> tuple[int, int]:
    """Validate the generation arguments; return the content size (height, width)."""
    if num_images < 1:
        fail(None, f'the number of images must be >= 1, got {num_images}')
    if seed < 0:
        fail(None, f'the seed must be >= 0, got {seed}')
    height, width = (int(v) for v in image_size)
    limit = tuple(int(s / (1 + size_jitter)) for s in CHALLENGE_SLICE_SHAPE)
    if not (MIN_CONTENT_SIDE <= height <= limit[0] and MIN_CONTENT_SIDE <= width <= limit[1]):
        fail(None, f'content size {height} x {width} (height x width) must be between {MIN_CONTENT_SIDE} and '
                   f'{limit[0]} x {limit[1]} so that it fits the {CHALLENGE_SLICE_SHAPE[0]} x '
                   f'{CHALLENGE_SLICE_SHAPE[1]} challenge slice')
    return height, width


def iter_synthetic_cephalograms(num_images: int, seed: int = 0,
                                image_size: tuple[int, int] = DEFAULT_CONTENT_SIZE,
                                size_jitter: float = 0.05) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``num_images`` ``(image, landmarks)`` pairs, generated one at a time as they are iterated.

    Image ``i`` uses its own generator seeded by ``(seed, i)`` and a content size within ``size_jitter`` of
    ``image_size`` (real images differ in size too). Arguments are checked at the call, not at the first image.
    """
    height, width = _check_arguments(num_images, seed, image_size, size_jitter)

    def images() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for index in range(num_images):
            rng = np.random.default_rng([seed, index])
            factor = rng.uniform(1 - size_jitter, 1 + size_jitter)
            aspect = rng.uniform(0.98, 1.02)
            yield draw_synthetic_cephalogram(rng, (round(height * factor * aspect), round(width * factor / aspect)))

    return images()


def generate_synthetic_dataset(out_dir: str | Path, num_images: int = 40, seed: int = 0,
                               image_size: tuple[int, int] = DEFAULT_CONTENT_SIZE,
                               overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``out_dir/train_stack.mha`` and ``out_dir/train-gt.json``; return their paths.

    Slices are generated and written one at a time. Existing files are only replaced with ``overwrite``.
    """
    out_dir = Path(out_dir)
    images = iter_synthetic_cephalograms(num_images, seed, image_size)
    if out_dir.exists() and not out_dir.is_dir():
        fail(out_dir, 'exists and is not a folder')
    stack_path, gt_path = out_dir / STACK_FILE_NAME, out_dir / GT_FILE_NAME
    for path in stack_path, gt_path:
        check_output_file(path, overwrite)
    points: dict[int, dict[int, tuple[float, float]]] = {}

    def slices() -> Iterator[np.ndarray]:
        for z, (image, landmarks) in enumerate(tqdm(images, total=num_images, desc='synthetic images'), start=1):
            points[z] = {k + 1: (round(float(x), 1), round(float(y), 1)) for k, (x, y) in enumerate(landmarks)}
            yield image

    start = time.perf_counter()
    write_stack(slices(), stack_path, num_images)
    write_json_atomic(ground_truth_document(points, {z: SYNTHETIC_SPACING_MM for z in points}), gt_path)
    logger.info('wrote %d synthetic images to %s and %s in %.1f s', num_images, stack_path, gt_path,
                time.perf_counter() - start)
    return stack_path, gt_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m cldetection.synthetic',
        description='Write a synthetic CL-Detection dataset (train_stack.mha + train-gt.json, 38 landmarks, '
                    '0.1 mm/px) of procedurally drawn skull-like X-rays, for tests and demos.')
    parser.add_argument('--out', required=True, type=Path, help='output folder (created if missing)')
    parser.add_argument('--num-images', type=int, default=40, help='number of images (stack slices) (default: 40)')
    parser.add_argument('--seed', type=int, default=0, help='random seed; the same seed gives the same files '
                                                             '(default: 0)')
    parser.add_argument('--height', type=int, default=DEFAULT_CONTENT_SIZE[0],
                        help='mean content height in pixels before zero padding to 2400 (default: %(default)s)')
    parser.add_argument('--width', type=int, default=DEFAULT_CONTENT_SIZE[1],
                        help='mean content width in pixels before zero padding to 2880 (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace train_stack.mha / train-gt.json if they already exist in --out')
    args = parser.parse_args(argv)
    stack_path, gt_path = generate_synthetic_dataset(args.out, args.num_images, args.seed,
                                                     (args.height, args.width), overwrite=args.overwrite)
    print(f'wrote {stack_path} and {gt_path}')
    return 0


if __name__ == '__main__':
    run_cli(main)
