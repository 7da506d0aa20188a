"""The cascade's transforms (cldetection.transforms): the anti-aliased TopdownAffine and the kept source image."""
from __future__ import annotations

import numpy as np
import pytest

from cldetection.transforms import AntiAliasTopdownAffine, KeepSourceImage


def _topdown_results(rng: np.random.Generator) -> dict:
    height, width = 2400, 1935
    # smooth content, so that area averaging and bilinear sampling agree up to aliasing
    yy, xx = np.mgrid[0:height, 0:width]
    img = (127 + 100 * np.sin(xx / 90.0) * np.cos(yy / 130.0)).astype(np.uint8)
    keypoints = np.stack([rng.uniform(0, width, 19), rng.uniform(0, height, 19)], axis=1)[None].astype(np.float32)
    return dict(img=np.stack([img] * 3, axis=-1), bbox_center=np.array([[967.0, 1199.5]], np.float32),
                bbox_scale=np.array([[2128.5, 2640.0]], np.float32), bbox_rotation=np.array([7.0]),
                keypoints=keypoints)


def test_anti_alias_affine_has_topdown_affines_geometry() -> None:
    from mmpose.datasets.transforms import TopdownAffine

    rng = np.random.default_rng(0)
    plain = TopdownAffine(input_size=(256, 320), use_udp=True).transform(_topdown_results(rng))
    smooth = AntiAliasTopdownAffine(input_size=(256, 320), use_udp=True).transform(_topdown_results(
        np.random.default_rng(0)))
    for key in ('transformed_keypoints', 'input_center', 'input_scale', 'bbox_scale', 'bbox_center', 'keypoints'):
        np.testing.assert_allclose(smooth[key], plain[key], rtol=1e-4, atol=1e-2, err_msg=key)
    assert smooth['img'].shape == plain['img'].shape == (320, 256, 3)
    inner = (slice(20, -20), slice(20, -20))  # away from the border, where the cut-off pixels matter
    assert np.abs(smooth['img'][inner].astype(int) - plain['img'][inner].astype(int)).mean() < 2.0



def test_anti_alias_affine_adds_no_keypoints_at_inference() -> None:
    """Without ground truth (step 5) the output has no ``keypoints`` key, as with MMPose's TopdownAffine."""
    results = _topdown_results(np.random.default_rng(0))
    del results['keypoints']
    out = AntiAliasTopdownAffine(input_size=(256, 320), use_udp=True).transform(results)
    assert 'keypoints' not in out and out['img'].shape == (320, 256, 3)


def test_anti_alias_affine_leaves_small_reductions_to_mmpose() -> None:
    results = dict(img=np.zeros((300, 300, 3), np.uint8), bbox_center=np.array([[150.0, 150.0]], np.float32),
                   bbox_scale=np.array([[300.0, 300.0]], np.float32))
    out = AntiAliasTopdownAffine(input_size=(256, 256), use_udp=True).transform(results)
    assert out['input_scale'] == pytest.approx([300.0, 300.0])


def test_keep_source_image_stores_a_reduced_grey_copy() -> None:
    img = np.zeros((40, 30, 3), np.uint8)
    img[..., :] = 90
    out = KeepSourceImage(factor=2).transform({'img': img})
    assert out['source_img'].shape == (20, 15) and out['source_img'].dtype == np.uint8
    assert out['source_factor'] == 2 and int(out['source_img'][3, 3]) == 90
    assert out['img'] is img  # the model input is untouched
    with pytest.raises(ValueError, match='positive integer'):
        KeepSourceImage(factor=1.5)

