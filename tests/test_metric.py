"""CephalometricMetric and the scoring functions, on hand-computed cases."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from cldetection.metric import (CephalometricMetric, format_table, per_image_rows, radial_errors_mm, sdr_key,
                                summarize_errors)

KEYS = ['MRE', 'MRE_SD', 'SDR 2.0mm', 'SDR 2.5mm', 'SDR 3.0mm', 'SDR 4.0mm']


def _sample(img_id, gt, pred, spacing, visible=None):
    gt = np.asarray(gt, dtype=np.float32)[None]
    visible = np.ones(gt.shape[1], dtype=np.float32) if visible is None else np.asarray(visible, np.float32)
    return {'img_id': img_id, 'img_path': f'/x/{img_id}.png', 'spacing': spacing,
            'gt_instances': {'keypoints': gt, 'keypoints_visible': visible[None]},
            'pred_instances': {'keypoints': np.asarray(pred, dtype=np.float32)[None]}}


def _two_images():
    # image 1, 0.1 mm/px: offsets (3, 4) px -> 0.5 mm; (20, 0) px -> 2.0 mm (on the 2 mm boundary)
    # image 2, 0.125 mm/px: offsets (16, 0) px -> 2.0 mm; (24, 32) px -> 40 px -> 5.0 mm
    a = _sample(1, [[100, 100], [200, 50]], [[103, 104], [220, 50]], 0.1)
    b = _sample(2, [[10, 10], [300, 300]], [[26, 10], [324, 332]], 0.125)
    return [a, b]


def test_radial_errors_use_each_images_spacing():
    errors = radial_errors_mm(np.array([[[3, 4]], [[3, 4]]]), np.zeros((2, 1, 2)), np.array([0.1, 0.125]))
    np.testing.assert_allclose(errors, [[0.5], [0.625]])


def test_pooled_mre_sd_and_sdr_on_known_offsets():
    metric = CephalometricMetric()
    metric.process([], _two_images())
    result = metric.compute_metrics(metric.results)
    assert list(result) == KEYS
    errors = np.array([0.5, 2.0, 2.0, 5.0])
    assert result['MRE'] == pytest.approx(2.375)
    assert result['MRE_SD'] == pytest.approx(math.sqrt(np.mean((errors - 2.375) ** 2)))  # population SD = 1.6346
    assert result['MRE_SD'] == pytest.approx(1.63458, abs=1e-4)
    # errors equal to 2.0 mm count as successes at 2.0 mm
    assert result['SDR 2.0mm'] == pytest.approx(75.0)
    assert result['SDR 4.0mm'] == pytest.approx(75.0)


def test_threshold_boundary_counts_as_success_and_just_above_does_not():
    errors = np.array([2.0, 2.0 + 1e-6, 2.5, 3.0, 4.0])
    result = summarize_errors(errors)
    assert result[sdr_key(2.0)] == pytest.approx(20.0)
    assert result[sdr_key(2.5)] == pytest.approx(60.0)
    assert result[sdr_key(3.0)] == pytest.approx(80.0)
    assert result[sdr_key(4.0)] == pytest.approx(100.0)


def test_spacing_changes_the_mm_error():
    same_offset = [_sample(1, [[0, 0]], [[16, 0]], 0.1), _sample(2, [[0, 0]], [[16, 0]], 0.125)]
    metric = CephalometricMetric()
    metric.process([], same_offset)
    result = metric.compute_metrics(metric.results)
    assert result['MRE'] == pytest.approx((1.6 + 2.0) / 2)
    assert result['SDR 2.0mm'] == pytest.approx(100.0)
    assert result['SDR 2.5mm'] == pytest.approx(100.0)


def test_invisible_landmarks_are_excluded_and_counted():
    far_but_invisible = _sample(3, [[0, 0], [0, 0]], [[3, 4], [5000, 5000]], 0.1, visible=[1, 0])
    metric = CephalometricMetric()
    metric.process([], [far_but_invisible])
    result = metric.compute_metrics(metric.results)
    assert result['MRE'] == pytest.approx(0.5)
    assert result['SDR 2.0mm'] == pytest.approx(100.0)
    assert metric.last_counts == {'images': 1, 'landmarks': 1, 'excluded_invisible': 1}


def test_missing_spacing_is_a_clear_error():
    sample = _two_images()[0]
    del sample['spacing']
    with pytest.raises(KeyError, match='PackCephalometricInputs'):
        CephalometricMetric().process([], [sample])


def test_csv_tables_reproduce_the_pooled_metrics(tmp_path):
    metric = CephalometricMetric(output_dir=str(tmp_path))
    metric.dataset_meta = {'keypoint_id2name': {0: 'sella', 1: 'nasion'}}
    metric.process([], _two_images())
    result = metric.compute_metrics(metric.results)
    with open(tmp_path / 'per_landmark.csv') as f:
        landmarks = list(csv.DictReader(f))
    assert [row['name'] for row in landmarks] == ['sella', 'nasion']
    assert float(landmarks[0]['MRE']) == pytest.approx((0.5 + 2.0) / 2)
    assert float(landmarks[1]['MRE']) == pytest.approx((2.0 + 5.0) / 2)
    with open(tmp_path / 'per_image.csv') as f:
        images = list(csv.DictReader(f))
    errors = np.array([[float(row[f'error_{k}']) for k in (1, 2)] for row in images])
    assert summarize_errors(errors) == pytest.approx(result)


def test_per_image_rows_blank_for_invisible():
    rows = per_image_rows(np.array([[1.0, 9.0]]), np.array([[True, False]]), [7], ['7.png'], [0.1])
    assert rows[0]['error_1'] == 1.0 and rows[0]['error_2'] == ''
    assert rows[0]['count'] == 1 and rows[0]['MRE'] == 1.0


def test_format_table_shows_mre_sd_and_sdrs():
    text = format_table(summarize_errors(np.array([1.0, 3.0])))
    assert 'MRE (mm)' in text and '2.000 ± 1.000' in text and '50.00 %' in text


def test_unlearned_landmark_is_named_and_hard_ones_are_not():
    from cldetection.metric import unlearned_landmarks

    errors = np.tile([1.0, 1.5, 2.0, 4.0, 9.0, 60.0], (3, 1))  # landmark 5: hard but < 10 mm; 6: collapsed
    visible = np.ones_like(errors, dtype=bool)
    assert unlearned_landmarks(errors, visible) == [(5, 60.0, 3.0)]
    visible[:, 5] = False  # invisible everywhere: nothing to judge
    assert unlearned_landmarks(errors, visible) == []
    assert unlearned_landmarks(np.full((2, 6), 15.0), np.ones((2, 6), bool)) == []  # all bad alike: early epochs


def test_metric_warns_about_an_unlearned_landmark(monkeypatch):
    import logging

    import cldetection.metric

    logged = []
    monkeypatch.setattr(cldetection.metric, 'print_log', lambda msg, logger=None, level=logging.INFO:
                        logged.append((level, msg)))
    gt = [[100.0 * k, 100.0] for k in range(1, 7)]
    pred = [[x + 5, y] for x, y in gt[:5]] + [[gt[5][0] + 600, 100.0]]  # 0.5 mm x 5, 60 mm
    metric = CephalometricMetric()
    metric.process([], [_sample(1, gt, pred, 0.1), _sample(2, gt, pred, 0.1)])
    result = metric.compute_metrics(metric.results)
    assert result['MRE'] == pytest.approx((5 * 0.5 + 60) / 6)
    warnings = [msg for level, msg in logged if level == logging.WARNING]
    assert len(warnings) == 1
    assert 'landmark 6 has an MRE of 60.0 mm, 120x the median landmark\'s 0.50 mm' in warnings[0]
