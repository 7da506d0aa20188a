"""Predicted error per landmark (cldetection.confidence) and measurement intervals (cldetection.measurement_intervals)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from cldetection.analysis import analyse_landmarks
from cldetection.confidence import ErrorCalibration, calibration_path, conformal_quantile, fit_calibration, \
    landmark_signals, review_flags
from cldetection.errors import InputError
from cldetection.measurement_intervals import measurement_intervals
from cldetection.patch_stage import heatmap_spread

#: 19 ISBI landmarks of a plausible lateral cephalogram facing right (pixels at 0.1 mm)
CEPH = np.array([[800, 1000], [1400, 950], [1290, 1100], [640, 1110], [1380, 1400], [1350, 1750], [1370, 1900],
                 [1300, 1980], [1350, 1950], [850, 1650], [1390, 1560], [1420, 1540], [1550, 1500], [1540, 1650],
                 [1500, 1320], [1480, 1950], [930, 1330], [1410, 1310], [700, 1250]], dtype=np.float64)


NAMES = ('disagreement_mm', 'local_spread_mm')  #: the synthetic signals: an informative one and noise


def synthetic_errors(images: int, landmarks: int, seed: int):
    """Errors whose size follows a signal: error vector = (0.5 + signal) x a heavy-tailed random vector (mm)."""
    rng = np.random.default_rng(seed)
    hardness = np.linspace(0.5, 2.0, landmarks)
    signal = rng.gamma(2.0, 0.5, (images, landmarks)) * hardness
    vectors = rng.standard_t(5, (images, landmarks, 2)) * (0.3 + 0.5 * signal)[..., None]
    return np.linalg.norm(vectors, axis=-1), vectors, {'disagreement_mm': signal, 'local_spread_mm': rng.gamma(
        2.0, 0.5, (images, landmarks))}


def test_the_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 10.0)  # 9 scores: rank ceil(10 * 0.9) = 9, the largest
    assert conformal_quantile(scores, 0.9) == 9.0
    assert conformal_quantile(scores, 0.5) == 5.0
    assert conformal_quantile(scores[:5], 0.9) == math.inf  # too few scores for 90 %


def test_the_calibrated_radius_covers_and_ranks_fresh_images():
    errors, vectors, signals = synthetic_errors(60, 19, seed=0)
    calibration = fit_calibration(errors, vectors, signals, np.arange(60) % 2 == 0, NAMES)
    assert calibration.slopes[0] > 0.5  # the informative signal carries weight, the noise one little
    assert abs(calibration.slopes[1]) < 0.3
    fresh_errors, _, fresh_signals = synthetic_errors(400, 19, seed=1)
    radius = calibration.radius(fresh_signals)
    assert 0.87 <= np.mean(fresh_errors <= radius) <= 0.93
    assert spearmanr(radius.ravel(), fresh_errors.ravel()).statistic > 0.5
    assert np.shape(calibration.residuals) == (30 * 19, 2)


def test_nan_errors_are_left_out_and_lost_signals_do_not_break_the_fit():
    errors, vectors, signals = synthetic_errors(20, 19, seed=2)
    errors[0, 3] = np.nan
    signals['disagreement_mm'][1, 4] = np.inf  # a lost estimate
    calibration = fit_calibration(errors, vectors, signals, np.arange(20) % 2 == 0, NAMES)
    assert np.isfinite(calibration.quantile) and np.isfinite(calibration.radius(signals)).all()


def test_fit_refuses_one_sided_splits():
    errors, vectors, signals = synthetic_errors(6, 19, seed=3)
    with pytest.raises(ValueError, match='both parts'):
        fit_calibration(errors, vectors, signals, np.ones(6, bool), NAMES)


def test_a_calibration_round_trips_and_is_refused_for_other_weights(tmp_path):
    errors, vectors, signals = synthetic_errors(10, 19, seed=4)
    weights = tmp_path / 'model.pth'
    weights.write_bytes(b'weights one')
    calibration = fit_calibration(errors, vectors, signals, np.arange(10) % 2 == 0, NAMES)
    calibration.checkpoint_sha256 = __import__('cldetection.confidence', fromlist=['x']).file_sha256(weights)
    path = calibration.save(calibration_path(weights))
    assert path.name == 'model.pth.calibration.json'
    loaded = ErrorCalibration.load(path, weights, 19)
    np.testing.assert_allclose(loaded.radius(signals), calibration.radius(signals))
    with pytest.raises(InputError, match='calibrates 19 landmarks, the model predicts 38'):
        ErrorCalibration.load(path, weights, 38)
    weights.write_bytes(b'weights two')
    with pytest.raises(InputError, match='other weights than model.pth'):
        ErrorCalibration.load(path, weights)
    path.write_text(json.dumps({'format': 'something else'}))
    with pytest.raises(InputError, match='not an error calibration'):
        ErrorCalibration.load(path)


def test_signals_from_a_cascade_prediction():
    points = np.array([[10.0, 10.0], [50.0, 50.0]])
    fields = {'keypoints': points, 'coarse_keypoints': points + [[3.0, 4.0], [0.0, 0.0]],
              'local_spread': np.array([2.0, 4.0]), 'keypoint_scores': np.array([0.9, 0.1]),
              'local_scores': np.array([0.8, 0.2])}
    signals = landmark_signals(fields, 0.1)
    np.testing.assert_allclose(signals['disagreement_mm'], [0.5, 0.0])
    np.testing.assert_allclose(signals['local_spread_mm'], [0.2, 0.4])
    assert set(signals) == {'disagreement_mm', 'local_spread_mm', 'global_score', 'local_score'}


def test_review_flags_points_outside_the_image_always_and_large_radii():
    points = np.array([[5.0, -4.7], [5.0, 5.0], [5.0, 5.0], [np.nan, 3.0], [99.0, 49.0]])
    flags, reasons = review_flags(points, np.array([0.5, 2.5, 1.0, 0.5, 0.5]), 100, 50, 2.0)
    assert flags.tolist() == [True, True, False, True, False]
    assert reasons[0] == 'outside the image' and reasons[1] == 'predicted error 2.5 mm > 2 mm'
    assert reasons[3] == 'not found'
    flags, _ = review_flags(points, None, 100, 50, 2.0)  # no calibration: only the geometric checks
    assert flags.tolist() == [True, False, False, True, False]


def test_heatmap_spread_grows_with_the_width_of_the_peak():
    ys, xs = np.mgrid[0:32, 0:32]
    narrow = np.exp(-((xs - 16) ** 2 + (ys - 16) ** 2) / (2 * 1.0 ** 2))
    wide = np.exp(-((xs - 16) ** 2 + (ys - 16) ** 2) / (2 * 4.0 ** 2))
    spread = heatmap_spread(np.stack([narrow, wide, -narrow]))
    assert spread[0] == pytest.approx(np.sqrt(2), rel=0.05)  # RMS radius of a 2-D Gaussian: sigma * sqrt(2)
    assert spread[1] == pytest.approx(4 * np.sqrt(2), rel=0.1)
    assert spread[2] == 0.0  # no positive mass


def test_measurement_intervals_follow_the_landmark_errors():
    residuals = np.random.default_rng(0).standard_normal((500, 2))
    exact = measurement_intervals(CEPH, np.full(19, 1e-6), residuals, 0.1)
    measured = analyse_landmarks(CEPH, 0.1)
    for name, interval in exact.items():
        assert interval.measurement.value == pytest.approx(measured[name].value)
        assert interval.low == pytest.approx(measured[name].value, abs=1e-3)
        assert interval.high == pytest.approx(measured[name].value, abs=1e-3)
        assert interval.p_class_wrong == 0.0
    loose = measurement_intervals(CEPH, np.full(19, 3.0), residuals, 0.1)
    for name, interval in loose.items():
        assert interval.low < interval.measurement.value < interval.high
    assert max(i.p_class_wrong for i in loose.values()) > 0.2
    again = measurement_intervals(CEPH, np.full(19, 3.0), residuals, 0.1)
    assert again['ANB'] == loose['ANB']  # seeded: the same image gives the same intervals


def test_measurement_intervals_without_spacing_or_calibration_are_empty_not_guessed():
    residuals = np.zeros((10, 2))
    no_spacing = measurement_intervals(CEPH, np.ones(19), residuals, None)
    assert math.isnan(no_spacing['MW'].measurement.value) and no_spacing['MW'].measurement.reason
    assert math.isfinite(no_spacing['ANB'].measurement.value)  # angles need no spacing
    assert all(math.isnan(i.low) and math.isnan(i.p_class_wrong) for i in no_spacing.values())
    no_calibration = measurement_intervals(CEPH, None, residuals, 0.1)
    assert all(math.isnan(i.high) for i in no_calibration.values())
