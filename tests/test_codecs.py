"""CentroidUDPHeatmap: MMPose's UDP heatmap decoded at its peak (unchanged) or at its centre of mass."""
from __future__ import annotations

import numpy as np
import pytest
from mmpose.codecs import UDPHeatmap

from cldetection.codecs import CentroidUDPHeatmap, heatmap_centroids

SIZES = dict(input_size=(128, 128), heatmap_size=(32, 32), sigma=2)


def _gaussian(x: float, y: float, sigma: float = 2.0, size: int = 32) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    return np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def test_peak_decoding_is_mmposes_udp() -> None:
    heatmaps = np.stack([_gaussian(10.3, 20.6), _gaussian(25.0, 4.2)])
    ours = CentroidUDPHeatmap(**SIZES).decode(heatmaps)
    stock = UDPHeatmap(**SIZES).decode(heatmaps)
    np.testing.assert_array_equal(ours[0], stock[0])
    np.testing.assert_array_equal(ours[1], stock[1])


def test_a_symmetric_heatmap_has_its_centroid_at_its_centre() -> None:
    codec = CentroidUDPHeatmap(**SIZES, decode='centroid', centroid_radius=5, centroid_floor=0.0)
    keypoints, scores = codec.decode(_gaussian(12.4, 17.7)[None])
    # UDP maps heatmap pixel u to u / (heatmap - 1) * input; the window, centred on the whole-pixel peak, cuts
    # the Gaussian's tails unevenly by 0.02 heatmap pixels (0.1 input pixels)
    np.testing.assert_allclose(keypoints[0, 0], np.array([12.4, 17.7]) / 31 * 128, atol=0.1)
    assert keypoints.shape == (1, 1, 2) and scores.shape == (1, 1)


def test_a_lopsided_heatmap_has_its_centroid_toward_its_bulk() -> None:
    """A tall peak and a broad shoulder to its right: the centre of mass lies right of the peak, and right of
    DARK-UDP's refined peak too, the more so the lower the floor (less of the shoulder cut off)."""
    heatmap = _gaussian(10.0, 16.0, sigma=1.5) + 0.6 * _gaussian(14.0, 16.0, sigma=3.0)
    peak = CentroidUDPHeatmap(**SIZES).decode(heatmap[None])[0][0, 0, 0] * 31 / 128
    low = heatmap_centroids(heatmap[None], np.array([[10, 16]]), radius=6, floor=0.0)[0]
    high = heatmap_centroids(heatmap[None], np.array([[10, 16]]), radius=6, floor=0.6)[0]
    assert 10.0 < high[0] < low[0] < 14.0 and low[0] - peak > 0.5
    assert abs(low[1] - 16.0) < 1e-6 and abs(high[1] - 16.0) < 1e-6


def test_a_flat_heatmap_keeps_its_peak_and_the_window_stops_at_the_border() -> None:
    flat = np.zeros((1, 32, 32), np.float32)
    np.testing.assert_array_equal(heatmap_centroids(flat, np.array([[-1, -1]]), 3, 0.2), [[-1, -1]])
    corner = _gaussian(0.0, 0.0)[None]
    centroid = heatmap_centroids(corner, np.array([[0, 0]]), 3, 0.0)[0]
    assert np.all(np.isfinite(centroid)) and np.all(centroid >= 0) and np.all(centroid < 1.5)


@pytest.mark.parametrize('kwargs, message', [
    (dict(decode='mean'), 'decode must be "peak" or "centroid"'),
    (dict(centroid_radius=0), 'centroid_radius >= 1'),
    (dict(centroid_floor=1.0), '0 <= centroid_floor < 1'),
    (dict(heatmap_type='combined'), 'only heatmap_type="gaussian"'),
])
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CentroidUDPHeatmap(**SIZES, **kwargs)
