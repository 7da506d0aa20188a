"""Step 5 on one's own radiographs (--images): calibration, outputs, spacing, review, bad input, no lost files."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cldetection.checkpoints import save_untrained_checkpoint
from cldetection.confidence import ErrorCalibration, calibration_path
from cldetection.errors import InputError
from cldetection.image_prediction import LANDMARK_COLUMNS, output_stems
from conftest import REPO_ROOT, TINY_CASCADE
from test_image_io import write_dicom
from test_train import make_tiny_coco

sys.path.insert(0, str(REPO_ROOT))
import step5_predict_expected_output as step5  # noqa: E402


def radiograph(height: int, width: int, seed: int) -> np.ndarray:
    """A grey image with smooth structure (not challenge-sized)."""
    noise = np.random.default_rng(seed).random((height // 8, width // 8)).astype(np.float32)
    return (cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope='module')
def calibrated(tmp_path_factory) -> Path:
    """An untrained tiny cascade with its calibration beside it (made by the documented command)."""
    from cldetection.calibrate import main as calibrate_main

    folder = tmp_path_factory.mktemp('calibrated')
    weights = save_untrained_checkpoint(TINY_CASCADE, folder / 'model.pth', seed=0)
    coco = make_tiny_coco(folder, num_images=6)
    assert calibrate_main(['--config_file', str(TINY_CASCADE), '--load_weight_path', str(weights),
                           '--ann_file', str(coco / 'train.json'), '--engine', 'pytorch']) == 0
    return weights


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / 'in'
    (folder / 'dicom').mkdir(parents=True)
    cv2.imwrite(str(folder / 'wide.png'), radiograph(240, 320, 0))  # wider than tall, no spacing in the file
    cv2.imwrite(str(folder / 'tall.jpg'), radiograph(300, 200, 1))
    write_dicom(folder / 'dicom' / 'ceph', (radiograph(260, 220, 2).astype(np.uint16) * 16), bits_stored=12,
                PixelSpacing=[0.15, 0.15])
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)  # a PNG cut short
    return folder


def run_step5(weights: Path, *args: str) -> int:
    return step5.main(['--config_file', str(TINY_CASCADE), '--load_weight_path', str(weights), '--engine', 'pytorch',
                       *args])


def read_rows(path: Path) -> list[dict]:
    with open(path, newline='', encoding='utf-8') as handle:
        return list(csv.DictReader(handle))


def test_calibrate_writes_a_calibration_for_these_weights(calibrated):
    calibration = ErrorCalibration.load(calibration_path(calibrated), calibrated, 38)
    assert calibration.images == {'fit': 3, 'conformal': 1} and calibration.quantile > 0  # train.json's 4 images
    assert len(calibration.residuals) == 1 * 38


def test_images_in_reviewed_answer_out(calibrated, inputs, tmp_path):
    out = tmp_path / 'out'
    assert run_step5(calibrated, '--images', str(inputs), '--output-dir', str(out)) == 2  # one file failed
    assert not list(out.glob('broken*'))  # nothing of the failed file, not even a placeholder
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ['ceph.csv', 'ceph.json', 'ceph_overlay.png', 'tall.csv', 'tall.json', 'tall_overlay.png', 'wide.csv',
         'wide.json', 'wide_overlay.png', 'measurements.csv', 'report.html'])
    with open(out / 'wide.csv', encoding='utf-8') as handle:
        assert handle.readline().strip() == ','.join(LANDMARK_COLUMNS)
    # DICOM: spacing from its header, millimetres and predicted errors filled
    ceph = json.loads((out / 'ceph.json').read_text())
    assert ceph['spacing_mm'] == pytest.approx(0.15) and 'Pixel Spacing' in ceph['spacing_source']
    assert (ceph['width'], ceph['height']) == (220, 260)
    rows = read_rows(out / 'ceph.csv')
    assert len(rows) == 38
    for row in rows:
        assert float(row['x_mm']) == pytest.approx(float(row['x_px']) * 0.15, abs=2e-3)
        assert float(row['predicted_error_mm']) > 0 and row['review'] in ('0', '1')
        error = float(row['predicted_error_mm'])
        inside = 0 <= float(row['x_px']) <= 219 and 0 <= float(row['y_px']) <= 259
        assert row['review'] == ('1' if error > 2.0 or not inside else '0')
    assert {m['name'] for m in ceph['measurements']} == {'ANB', 'SNB', 'SNA', 'ODI', 'APDI', 'FHI', 'FMA', 'MW'}
    assert all(m['low'] is None or m['low'] <= m['value'] <= m['high'] for m in ceph['measurements'])
    # PNG without spacing: pixel outputs only, never an assumed 0.1 mm
    wide = read_rows(out / 'wide.csv')
    assert all(r['x_mm'] == r['y_mm'] == r['predicted_error_mm'] == '' and r['x_px'] for r in wide)
    wide_json = json.loads((out / 'wide.json').read_text())
    assert wide_json['spacing_mm'] is None
    mw = next(m for m in wide_json['measurements'] if m['name'] == 'MW')
    assert mw['value'] is None and mw['note']
    overlay = cv2.imread(str(out / 'wide_overlay.png'))
    assert overlay.shape == (240, 320, 3)  # the image's own pixels
    measurements = read_rows(out / 'measurements.csv')
    assert len(measurements) == 3 and {'ANB', 'ANB_low', 'ANB_high', 'ANB_class', 'ANB_p_class_wrong'} <= set(
        measurements[0])
    page = (out / 'report.html').read_text()
    assert 'broken.png' in page and page.count('<section class="image') == 3


def test_existing_outputs_are_kept_unless_overwrite(calibrated, inputs, tmp_path):
    out = tmp_path / 'out'
    (inputs / 'broken.png').unlink()
    assert run_step5(calibrated, '--images', str(inputs), '--output-dir', str(out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / 'tall.csv').write_text('my own notes')
    with pytest.raises(InputError, match='ceph.csv: already exists; pass --overwrite'):
        run_step5(calibrated, '--images', str(inputs), '--output-dir', str(out))
    assert (out / 'tall.csv').read_text() == 'my own notes'  # nothing touched
    assert {p.name for p in out.iterdir()} == set(before)
    assert run_step5(calibrated, '--images', str(inputs), '--output-dir', str(out), '--overwrite') == 0
    assert (out / 'tall.csv').read_bytes() == before['tall.csv']  # the same prediction again


def test_spacing_flag_fills_millimetres_and_threshold_changes_review(calibrated, inputs, tmp_path):
    (inputs / 'broken.png').unlink()
    strict, loose = tmp_path / 'strict', tmp_path / 'loose'
    assert run_step5(calibrated, '--images', str(inputs / 'wide.png'), '--output-dir', str(strict),
                     '--spacing', '0.2', '--review-threshold', '0.01') == 0
    assert run_step5(calibrated, '--images', str(inputs / 'wide.png'), '--output-dir', str(loose),
                     '--spacing', '0.2', '--review-threshold', '1000') == 0
    strict_rows, loose_rows = read_rows(strict / 'wide.csv'), read_rows(loose / 'wide.csv')
    assert all(float(r['x_mm']) == pytest.approx(float(r['x_px']) * 0.2, abs=2e-3) for r in strict_rows)
    assert all(r['review'] == '1' for r in strict_rows)
    inside = [0 <= float(r['x_px']) <= 319 and 0 <= float(r['y_px']) <= 239 for r in loose_rows]
    assert [r['review'] == '1' for r in loose_rows] == [not i for i in inside]  # only points off the image


def test_without_a_calibration_predicted_errors_are_empty(inputs, tmp_path):
    weights = save_untrained_checkpoint(TINY_CASCADE, tmp_path / 'bare.pth', seed=0)
    (inputs / 'broken.png').unlink()
    out = tmp_path / 'out'
    assert run_step5(weights, '--images', str(inputs / 'dicom'), '--output-dir', str(out)) == 0
    assert all(r['predicted_error_mm'] == '' and r['x_mm'] for r in read_rows(out / 'ceph.csv'))
    assert json.loads((out / 'ceph.json').read_text())['calibration'] is None


def test_a_calibration_of_other_weights_is_refused(calibrated, inputs, tmp_path):
    other = save_untrained_checkpoint(TINY_CASCADE, tmp_path / 'other.pth', seed=1)
    with pytest.raises(InputError, match='other weights than other.pth'):
        run_step5(other, '--images', str(inputs / 'wide.png'), '--output-dir', str(tmp_path / 'out'),
                  '--calibration', str(calibration_path(calibrated)))
    assert not (tmp_path / 'out' / 'report.html').exists()


def test_mode_flags_are_checked(calibrated, inputs, tmp_path):
    with pytest.raises(InputError, match='--images needs --output-dir'):
        run_step5(calibrated, '--images', str(inputs))
    with pytest.raises(InputError, match='--save_json_path is for a stack'):
        run_step5(calibrated, '--images', str(inputs), '--output-dir', str(tmp_path), '--save_json_path', 'x.json')
    with pytest.raises(InputError, match='not found'):
        run_step5(calibrated, '--images', str(tmp_path / 'missing.png'), '--output-dir', str(tmp_path / 'o'))


def test_output_stems_never_collide():
    assert output_stems([Path('a/x.png'), Path('b/x.dcm'), Path('c/X.jpg'), Path('y.png')]) == ['x', 'x-2', 'X-3', 'y']


def test_calibrate_refuses_what_it_cannot_calibrate_on(calibrated, tmp_path):
    from cldetection.calibrate import main as calibrate_main

    coco = make_tiny_coco(tmp_path, num_images=6)
    common = ['--config_file', str(TINY_CASCADE), '--load_weight_path', str(calibrated), '--engine', 'pytorch']
    with pytest.raises(InputError, match='calibration.json: already exists; pass --overwrite'):
        calibrate_main([*common, '--ann_file', str(coco / 'train.json')])
    with pytest.raises(InputError, match='a calibration needs at least 4'):
        calibrate_main([*common, '--ann_file', str(coco / 'test.json'), '--overwrite'])
    with pytest.raises(InputError, match='--coverage must lie between 0 and 1'):
        calibrate_main([*common, '--ann_file', str(coco / 'train.json'), '--overwrite', '--coverage', '90'])
    (tmp_path / 'not-coco.json').write_text('{"images": [{"id": 1}]}')
    with pytest.raises(InputError, match='not a step 2 annotation file'):
        calibrate_main([*common, '--ann_file', str(tmp_path / 'not-coco.json'), '--overwrite'])
    assert ErrorCalibration.load(calibration_path(calibrated), calibrated)  # the calibration there is untouched
