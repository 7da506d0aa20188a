"""RandomElasticDeform (research: benchmarks/ablations/modules/elastic_deform.py, used by the ablation
cascade_global-shape): the image and its keypoints must move together."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import dots, peak_near

import cldetection  # noqa: F401  (registers into MMPose before the module registers its transform)
from benchmarks.ablations.modules.elastic_deform import (RandomElasticDeform, deform_image_and_points,
                                                        random_deformation_field)


def test_deformed_points_land_on_the_deformed_image_features() -> None:
    rng = np.random.default_rng(0)
    points = np.array([[60.0, 70.0], [190.0, 250.0], [128.0, 160.0], [90.0, 220.0]])
    image = dots((320, 256), points)
    for _ in range(10):
        field = random_deformation_field(image.shape, 0.2, 0.02, 5, rng)
        assert np.abs(field).max() > 5  # a real deformation, not the identity
        warped, moved = deform_image_and_points(image, points, field)
        for point in moved:
            assert np.linalg.norm(peak_near(warped, point) - point) < 0.35


def test_zero_deformation_is_the_identity() -> None:
    field = random_deformation_field((40, 30), 0.0, 0.0, 5, np.random.default_rng(0))
    assert not field.any()
    image = np.random.default_rng(1).integers(0, 255, (40, 30), dtype=np.uint8)
    points = np.array([[3.5, 7.25], [20.0, 33.0]])
    warped, moved = deform_image_and_points(image, points, field)
    np.testing.assert_array_equal(warped, image)
    np.testing.assert_allclose(moved, points, atol=1e-5)


def test_random_elastic_deform_moves_transformed_keypoints_with_the_input() -> None:
    np.random.seed(0)
    points = np.array([[[60.0, 70.0], [190.0, 250.0], [128.0, 160.0]]])
    image = np.repeat(np.clip(dots((320, 256), points[0]), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    original = np.array([[[600.0, 700.0], [1900.0, 2500.0], [1280.0, 1600.0]]])
    results = RandomElasticDeform(axis_scale=0.15, elastic_sd=0.01, prob=1.0).transform(
        {'img': image.copy(), 'transformed_keypoints': points.copy(), 'keypoints': original.copy()})
    assert results['img'].shape == image.shape and not np.array_equal(results['img'], image)
    assert not np.allclose(results['transformed_keypoints'], points)
    np.testing.assert_array_equal(results['keypoints'], original)  # the radiograph's own coordinates stay
    for point in results['transformed_keypoints'][0]:
        assert np.linalg.norm(peak_near(results['img'][..., 0], point) - point) < 0.6  # (uint8 rounding)


def test_random_elastic_deform_probability_and_arguments() -> None:
    image = np.full((32, 32, 3), 7, np.uint8)
    points = np.array([[[3.0, 4.0]]])
    results = RandomElasticDeform(prob=0.0).transform({'img': image, 'transformed_keypoints': points})
    assert results['img'] is image and results['transformed_keypoints'] is points
    # at inference TopdownAffine leaves a 0-d array for the keypoints: only the image is deformed
    assert RandomElasticDeform(prob=1.0).transform({'img': image, 'transformed_keypoints': np.zeros([])})[
        'img'].shape == image.shape
    for bad in (dict(axis_scale=0.6), dict(elastic_sd=-1.0), dict(prob=2.0)):
        with pytest.raises(ValueError, match='RandomElasticDeform'):
            RandomElasticDeform(**bad)
