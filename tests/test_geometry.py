"""Coordinate geometry of the cascade (cldetection.geometry): area downscaling and patch warps."""
from __future__ import annotations

import numpy as np
import pytest

from cldetection.geometry import area_downscale, cut_patches, from_reduced, patch_to_image, patch_warp_matrix, to_reduced


def test_area_downscale_maps_pixel_centres() -> None:
    image = np.zeros((97, 61), np.uint8)  # not multiples of 4: the trailing rows/columns are cut
    image[40:44, 20:24] = 255  # a 4 x 4 block centred on (21.5, 41.5) in (x, y)
    reduced = area_downscale(image, 4)
    assert reduced.shape == (24, 15)
    ys, xs = np.nonzero(reduced)
    assert (xs.mean(), ys.mean()) == pytest.approx(tuple(to_reduced(np.array([21.5, 41.5]), 4)))
    assert from_reduced(to_reduced(np.array([3.0, 7.0]), 4), 4) == pytest.approx([3.0, 7.0])
    assert area_downscale(image, 1) is image



def test_patch_round_trip_through_the_udp_codec() -> None:
    """A point warped into a patch, encoded and decoded by MMPose's UDP codec comes back to where it was."""
    from mmpose.codecs import UDPHeatmap

    codec = UDPHeatmap(input_size=(128, 128), heatmap_size=(32, 32), sigma=2)
    rng = np.random.default_rng(1)
    points = rng.uniform(200, 800, (6, 2))
    centers = points + rng.uniform(-30, 30, (6, 2))
    extent = 256.0
    recovered = []
    for point, center in zip(points, centers):
        matrix = patch_warp_matrix(center, extent, 0.0, (128, 128))
        in_patch = matrix @ np.append(point, 1.0)
        encoded = codec.encode(in_patch[None, None], np.ones((1, 1)))
        decoded, _ = codec.decode(encoded['heatmaps'])
        recovered.append(decoded[0, 0])
    np.testing.assert_allclose(patch_to_image(np.array(recovered), centers, extent, (128, 128)), points, atol=0.05)


def test_cut_patches_samples_the_image_around_each_centre() -> None:
    image = np.zeros((400, 300), np.uint8)
    image[100, 50] = 255
    image[300, 250] = 200
    patches, matrices = cut_patches(image, np.array([[50.0, 100.0], [250.0, 300.0]]), 63.0, (64, 64))
    assert patches.shape == (2, 64, 64) and matrices.shape == (2, 2, 3)
    # each bright pixel sits at the centre of its own patch ((64 - 1) / 2 = 31.5: between four pixels)
    for patch, value in zip(patches, (255, 200)):
        assert int(patch[31:33, 31:33].sum()) == pytest.approx(value, abs=2)  # int: no unsigned wrap-around
    empty, _ = cut_patches(image, np.zeros((0, 2)), 63.0, (64, 64))
    assert empty.shape == (0, 64, 64)
