"""Step 4 on tiny synthetic data with an untrained tiny model: files, their consistency, overlays and plots.

The model is untrained (its predictions are meaningless): these tests check what step 4 writes, not accuracy
(the demo checks that).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_train import TINY_CONFIG, assert_one_line_error, load_script, make_tiny_coco, one_torch_thread  # noqa: F401

from cldetection.errors import run_cli
from cldetection.metric import summarize_errors
from cldetection.metric import success_rates
from cldetection.visualize import draw_overlay, read_per_image_errors

REPO_ROOT = Path(__file__).resolve().parents[1]
STEP4 = REPO_ROOT / 'step4_test_and_visualize.py'
METRIC_KEYS = {'MRE', 'MRE_SD', 'SDR 2.0mm', 'SDR 2.5mm', 'SDR 3.0mm', 'SDR 4.0mm'}
pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def coco_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_coco(tmp_path_factory.mktemp('eval_data'))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cldetection.checkpoints import save_untrained_checkpoint

    return save_untrained_checkpoint(TINY_CONFIG, tmp_path_factory.mktemp('ckpt') / 'untrained.pth')


@pytest.fixture(scope='module')
def step4_run(coco_dir: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    out = tmp_path_factory.mktemp('step4')
    out_dir, show_dir = out / 'eval', out / 'overlays'
    argv = [str(TINY_CONFIG), str(checkpoint), '--split', 'test', '--out-dir', str(out_dir), '--show-dir',
            str(show_dir), '--cfg-options', f'data_root={coco_dir}']
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exit_info:
        run_cli(load_script(STEP4).main, argv)
    assert exit_info.value.code == 0
    return out_dir, show_dir, stdout.getvalue()


def test_prints_the_table_and_writes_metrics_equal_to_the_per_image_csv(step4_run: tuple[Path, Path, str]) -> None:
    out_dir, _, stdout = step4_run
    assert 'MRE (mm)' in stdout and '±' in stdout and 'SDR 2.0mm' in stdout
    metrics = json.loads((out_dir / 'metrics.json').read_text())
    assert set(metrics) == METRIC_KEYS
    errors = read_per_image_errors(out_dir / 'per_image.csv')
    assert errors.shape == (2, 38)  # two test images, 38 landmarks
    recomputed = summarize_errors(np.nan_to_num(errors), np.isfinite(errors))
    assert metrics == pytest.approx(recomputed, rel=1e-12)
    per_landmark = (out_dir / 'per_landmark.csv').read_text().splitlines()
    assert len(per_landmark) == 1 + 38


def test_overlays_one_per_image_full_size_and_drawn(step4_run: tuple[Path, Path, str], coco_dir: Path) -> None:
    _, show_dir, _ = step4_run
    images = json.loads((coco_dir / 'test.json').read_text())['images']
    assert sorted(p.name for p in show_dir.iterdir() if p.is_file()) == \
        sorted(Path(i['file_name']).stem + '.jpg' for i in images)
    for info in images:
        overlay = cv2.imread(str(show_dir / (Path(info['file_name']).stem + '.jpg')))
        original = cv2.imread(str(coco_dir / 'images' / info['file_name']))
        assert overlay.shape == original.shape == (info['height'], info['width'], 3)
        changed = np.abs(overlay.astype(int) - original.astype(int)).max(axis=2) > 40
        assert changed.mean() > 0.01  # markers, lines, numbers, legend
        b, g, r = (overlay[..., c].astype(int) for c in range(3))
        assert ((g > 180) & (r < 120) & (b < 120)).sum() > 20  # green ground truth
        assert ((r > 180) & (g < 120) & (b < 120)).sum() > 20  # red predictions


def test_analysis_csv_holds_the_ground_truth_measurements_and_the_printed_agreement(
        step4_run: tuple[Path, Path, str], coco_dir: Path) -> None:
    """Ground-truth measurements recomputed from test.json; the printed agreement recomputed from the CSV."""
    from cldetection.analysis import MEASUREMENT_NAMES, analyse_landmarks

    out_dir, _, stdout = step4_run
    with open(out_dir / 'analysis.csv', newline='', encoding='utf-8') as f:
        rows = {r['image']: r for r in csv.DictReader(f)}
    test = json.loads((coco_dir / 'test.json').read_text())
    assert sorted(rows) == sorted(i['file_name'] for i in test['images'])
    files = {i['id']: i['file_name'] for i in test['images']}
    spacing = {i['id']: i['spacing'] for i in test['images']}
    for ann in test['annotations']:
        keypoints = np.array(ann['keypoints'], dtype=np.float64).reshape(-1, 3)
        expected = analyse_landmarks(keypoints[:, :2], spacing[ann['image_id']], visible=keypoints[:, 2])
        row = rows[files[ann['image_id']]]
        for name in MEASUREMENT_NAMES:
            assert float(row[f'{name}_gt']) == pytest.approx(expected[name].value, abs=1e-3)
            assert row[f'{name}_gt_class'] == str(expected[name].class_number)
    table = [line for line in stdout.splitlines() if line.startswith('class = ground truth')]
    assert len(table) == 1 and table[0].split('|')[1:] != []
    printed = stdout.splitlines()[stdout.splitlines().index(table[0]) + 1].split('|')[1:]
    for name, cell in zip(MEASUREMENT_NAMES, printed):
        agree = sum(r[f'{name}_pred_class'] == r[f'{name}_gt_class'] for r in rows.values())
        assert cell.split('(')[1].split(')')[0] == f'{agree}/{len(rows)}'


def test_analysis_overlays_one_per_image(step4_run: tuple[Path, Path, str], coco_dir: Path) -> None:
    _, show_dir, _ = step4_run
    images = json.loads((coco_dir / 'test.json').read_text())['images']
    for info in images:
        overlay = cv2.imread(str(show_dir / 'analysis' / (Path(info['file_name']).stem + '.jpg')))
        original = cv2.imread(str(coco_dir / 'images' / info['file_name']))
        assert overlay.shape == original.shape
        assert (np.abs(overlay.astype(int) - original.astype(int)).max(axis=2) > 40).mean() > 0.01


def test_fewer_than_19_landmarks_gives_no_analysis() -> None:
    from cldetection.evaluate import ImagePrediction, analyse_predictions

    few = ImagePrediction('a.png', 1, 0.1, np.zeros((10, 2)), np.zeros((10, 2)), np.ones(10, bool))
    assert analyse_predictions([few]) == []


def _assert_plot(path: Path, size: tuple[int, int]) -> None:
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1::-1] == size
    packed = image[..., 0].astype(np.int64) << 16 | image[..., 1].astype(np.int64) << 8 | image[..., 2]
    assert image.std() > 10 and len(np.unique(packed)) > 20  # not blank


def test_plots_exist_with_expected_size_and_content(step4_run: tuple[Path, Path, str]) -> None:
    out_dir, _, _ = step4_run
    _assert_plot(out_dir / 'per_landmark_mre.png', (int(13.4 * 120), int(4.5 * 120)))  # 38 bars: 13.4 x 4.5 in
    _assert_plot(out_dir / 'sdr_curve.png', (int(6.4 * 120), int(4.5 * 120)))


def test_other_splits_use_their_annotations(coco_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    from cldetection.evaluate import evaluate

    result = evaluate(TINY_CONFIG, checkpoint, split='train', out_dir=tmp_path, cfg_options={'data_root': str(coco_dir)})
    assert read_per_image_errors(result.files['per_image']).shape == (8, 38)
    assert set(result.metrics) == METRIC_KEYS


def test_sdr_curve_counts_errors_within_each_radius() -> None:
    errors = np.array([[0.5, 2.0, 3.0, np.nan], [4.5, 1.0, 2.5, 6.0]])
    assert success_rates(errors, np.array([0.0, 2.0, 2.5, 5.0])).tolist() == pytest.approx(
        [0.0, 300 / 7, 400 / 7, 600 / 7])


def test_overlay_of_a_grey_image_marks_every_landmark() -> None:
    image = np.full((300, 240), 90, np.uint8)
    gt = np.array([[50.0, 60.0], [150.0, 200.0]])
    overlay = draw_overlay(image, gt, gt + [8.0, 0.0], spacing=0.1, title='x.png')
    assert overlay.shape == (300, 240, 3)
    for x, y in gt.astype(int):
        assert overlay[y, x, 1] > 180 and overlay[y, x, 2] < 120  # green dot on the ground truth


def test_bad_input_is_one_line_error(coco_dir: Path, checkpoint: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    data = ['--cfg-options', f'data_root={coco_dir}', '--out-dir', str(tmp_path / 'o')]
    step4 = load_script(STEP4).main
    assert_one_line_error(step4, [str(TINY_CONFIG), str(tmp_path / 'missing.pth'), *data], 'weights file not found',
                          capsys)
    assert_one_line_error(step4, [str(TINY_CONFIG), str(checkpoint), '--cfg-options', f'data_root={tmp_path}'],
                          'annotation file of test_dataloader not found', capsys)
    # a checkpoint of another model (19 landmarks) does not load silently into the 38-landmark config
    other_config = tmp_path / 'nineteen.py'
    other_config.write_text(f"_base_ = '{TINY_CONFIG}'\nmodel = dict(head=dict(out_channels=19))\n")
    from cldetection.checkpoints import save_untrained_checkpoint
    other = save_untrained_checkpoint(other_config, tmp_path / 'nineteen.pth')
    assert_one_line_error(step4, [str(TINY_CONFIG), str(other), *data], 'weights do not fit the model', capsys)
    assert not (tmp_path / 'o').exists()  # checked before the runner writes its log folder and config copy


def test_load_errors_are_worded_as_step5s_and_leave_nothing(coco_dir: Path, checkpoint: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """A text file named .pth (before: 'IndexError: pop from empty list') and a truncated checkpoint."""
    out = tmp_path / 'o'
    data = ['--cfg-options', f'data_root={coco_dir}', '--out-dir', str(out)]
    text = tmp_path / 'notes.pth'
    text.write_text('just some notes\n')
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(checkpoint.read_bytes()[:4096])
    for weights, message in [(text, 'notes.pth: not a checkpoint'), (cut, 'cut.pth: cannot read the weights: '
                                                                          'truncated or damaged zip checkpoint')]:
        assert_one_line_error(load_script(STEP4).main, [str(TINY_CONFIG), str(weights), *data], message, capsys)
        assert not out.exists()
