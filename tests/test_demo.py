"""The demo's wiring on a shrunken run (12 small images, 1 epoch), its mean-shape baseline and its safety.

The real demo (60 images, full tiny schedule, the >= 3x check) takes minutes: run ``make demo``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_train import assert_one_line_error, one_torch_thread  # noqa: F401

from cldetection.demo import MARKER_FILE, main, mean_shape_metrics, run_demo

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def test_shrunken_demo_runs_every_step_into_the_work_dir(tmp_path: Path) -> None:
    work_dir = tmp_path / 'demo'
    summary = run_demo(work_dir, num_images=12, image_size=(256, 208),
                       cfg_options={'train_cfg.max_epochs': 1, 'train_dataloader.batch_size': 4})
    on_disk = json.loads((work_dir / 'demo_summary.json').read_text())
    assert on_disk['model_MRE'] == summary['model_MRE'] > 0
    assert on_disk['mean_shape_MRE'] == pytest.approx(
        mean_shape_metrics(work_dir / 'coco' / 'train.json', work_dir / 'coco' / 'test.json')['MRE'])
    assert on_disk['improvement'] == pytest.approx(on_disk['mean_shape_MRE'] / on_disk['model_MRE'])
    metrics = json.loads((work_dir / 'eval_test' / 'metrics.json').read_text())
    assert metrics == on_disk['model_metrics']
    assert (work_dir / 'challenge' / 'train_stack.mha').is_file()
    assert len(list((work_dir / 'eval_test' / 'overlays').glob('*.jpg'))) == 2  # 2 test images of 12
    assert list((work_dir / 'train').glob('*.pth'))
    assert set(on_disk['seconds']) == {'synthetic data', 'step2 prepare', 'step3 train', 'step4 test',
                                       'step5 predict', 'calibrate + step5 images'}
    # step 5 --images on the test images: their outputs and the report (2 valid images: too few to calibrate on)
    review = on_disk['review']
    assert review['images'] == 2 and review['calibration'] is None and review['test_coverage'] is None
    assert (work_dir / 'review' / 'report.html').is_file() and (work_dir / 'review' / 'measurements.csv').is_file()
    assert len(list((work_dir / 'review').glob('*_overlay.png'))) == 2
    # step 5 predicted the test slices of the stack into a challenge JSON, and scores them like step 4
    predictions = json.loads((work_dir / 'predictions.json').read_text())
    test_ids = [image['id'] for image in json.loads((work_dir / 'coco' / 'test.json').read_text())['images']]
    assert sorted({p['point'][2] for p in predictions['points']}) == test_ids
    assert len(predictions['points']) == 38 * len(test_ids)
    assert on_disk['step5_MRE'] == pytest.approx(on_disk['model_MRE'], abs=1e-3) and on_disk['step5_matches_step4']


def _coco(path: Path, points: list[list[tuple[float, float]]], spacing: float = 0.1) -> Path:
    doc = {'images': [{'id': i + 1, 'file_name': f'{i + 1}.png', 'spacing': spacing} for i in range(len(points))],
           'annotations': [{'id': i + 1, 'image_id': i + 1, 'keypoints': [v for x, y in p for v in (x, y, 2)]}
                           for i, p in enumerate(points)]}
    path.write_text(json.dumps(doc))
    return path


def test_mean_shape_predicts_the_mean_training_position(tmp_path: Path) -> None:
    train = _coco(tmp_path / 'train.json', [[(0, 0), (10, 10)], [(20, 0), (30, 10)]])  # mean (10, 0), (20, 10)
    test = _coco(tmp_path / 'test.json', [[(13, 4), (20, 10)]])  # errors 5 px and 0 px at 0.1 mm/px
    metrics = mean_shape_metrics(train, test)
    assert metrics['MRE'] == pytest.approx(0.25) and metrics['SDR 2.0mm'] == 100.0
    assert np.isclose(metrics['MRE_SD'], 0.25)


def test_refuses_a_non_empty_work_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    work_dir = tmp_path / 'mine'
    work_dir.mkdir()
    (work_dir / 'precious.txt').write_text('keep me')
    assert_one_line_error(main, ['--work-dir', str(work_dir)], 'is not empty; pass --overwrite', capsys)
    # --overwrite only ever deletes what a previous demo made
    assert_one_line_error(main, ['--work-dir', str(work_dir), '--overwrite'], f'no {MARKER_FILE}', capsys)
    assert (work_dir / 'precious.txt').read_text() == 'keep me'
