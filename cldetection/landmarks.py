"""Landmark definitions and the MMPose dataset metainfo built from them.

Landmarks 1-19 are the ISBI 2015 definitions (Wang et al. 2016), in the ISBI order, which CL-Detection 2023
keeps for its first 19 points. Landmarks 20-38 are the challenge's additional points; we name them by number
only rather than guess at anatomical names the challenge data does not carry.
"""
from __future__ import annotations

import colorsys

ISBI2015_LANDMARK_NAMES: tuple[str, ...] = (
    'sella', 'nasion', 'orbitale', 'porion', 'subspinale', 'supramentale', 'pogonion', 'menton',
    'gnathion', 'gonion', 'lower_incisal_incision', 'upper_incisal_incision', 'upper_lip', 'lower_lip',
    'subnasale', 'soft_tissue_pogonion', 'posterior_nasal_spine', 'anterior_nasal_spine', 'articulare',
)
NUM_CL2023_LANDMARKS = 38


def landmark_names(num_landmarks: int = NUM_CL2023_LANDMARKS) -> list[str]:
    """Names of landmarks 1..num_landmarks (ISBI names first, then ``landmark_<n>``)."""
    if num_landmarks < 1:
        raise ValueError(f'num_landmarks must be >= 1, got {num_landmarks}')
    return [ISBI2015_LANDMARK_NAMES[i] if i < len(ISBI2015_LANDMARK_NAMES) else f'landmark_{i + 1}'
            for i in range(num_landmarks)]


def _colour(i: int, n: int) -> list[int]:
    r, g, b = colorsys.hsv_to_rgb(i / max(n, 1), 0.8, 1.0)
    return [int(255 * r), int(255 * g), int(255 * b)]


def cephalometric_metainfo(num_landmarks: int = NUM_CL2023_LANDMARKS,
                           dataset_name: str = 'cephalometric') -> dict:
    """MMPose metainfo for ``num_landmarks`` cephalometric landmarks.

    No flip pairs (``swap`` is empty): a lateral cephalogram has no left/right landmark pairs, so a horizontal
    flip maps every landmark to itself. ``sigmas`` only matter to COCO's OKS, which we never compute.
    """
    names = landmark_names(num_landmarks)
    keypoint_info = {i: dict(name=name, id=i, color=_colour(i, num_landmarks), type='', swap='')
                     for i, name in enumerate(names)}
    return dict(dataset_name=dataset_name, keypoint_info=keypoint_info, skeleton_info={},
                joint_weights=[1.0] * num_landmarks, sigmas=[0.025] * num_landmarks)
