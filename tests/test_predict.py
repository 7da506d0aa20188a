"""Step 5 and the predictor: challenge JSON, metrics against a ground truth, coordinates, bad input."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from cldetection.challenge_io import (crop_zero_padding, ground_truth_document, load_landmarks, read_stack_slices,
                                      write_json_atomic, write_stack)
from cldetection.errors import run_cli
from cldetection.grand_challenge import prediction_schema_problems
from cldetection.checkpoints import save_untrained_checkpoint
from cldetection.predict import LandmarkPredictor, evaluate_points, resolve_device
from cldetection.synthetic import generate_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import step5_predict_expected_output as step5  # noqa: E402

# A small HRNet (64 x 64 input) with the test pipeline of our configs, so that tests run in seconds.
TEST_CONFIG = """
custom_imports = dict(imports=['cldetection'], allow_failed_imports=False)
default_scope = 'mmpose'
codec = dict(type='UDPHeatmap', input_size=(64, 64), heatmap_size=(16, 16), sigma=2)
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type='HRNet', in_channels=3, extra=dict(
        stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(1,), num_channels=(8,)),
        stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(1, 1), num_channels=(8, 16)),
        stage3=dict(num_modules=1, num_branches=3, block='BASIC', num_blocks=(1, 1, 1), num_channels=(8, 16, 32)),
        stage4=dict(num_modules=1, num_branches=4, block='BASIC', num_blocks=(1, 1, 1, 1),
                    num_channels=(8, 16, 32, 64))),
        init_cfg=dict(type='Pretrained', checkpoint='https://example.invalid/never-downloaded.pth')),
    head=dict(type='HeatmapHead', in_channels=8, out_channels=NUM_LANDMARKS, deconv_out_channels=None,
              loss=dict(type='KeypointMSELoss', use_target_weight=True), decoder=codec),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=False))
test_pipeline = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale', padding=1.0),
                 dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
                 dict(type='PackCephalometricInputs')]
train_dataloader = dict(batch_size=1, dataset=dict(type='CephalometricDataset', num_landmarks=NUM_LANDMARKS,
                        data_root='', ann_file='train.json', data_prefix=dict(img='images/'), pipeline=[]))
test_dataloader = dict(batch_size=1, dataset=dict(type='CephalometricDataset', num_landmarks=NUM_LANDMARKS,
                       data_root='', ann_file='test.json', data_prefix=dict(img='images/'), test_mode=True,
                       pipeline=test_pipeline))
"""


def write_test_model(folder: Path, num_landmarks: int = 38, seed: int = 0) -> tuple[Path, Path]:
    """A small config and an untrained checkpoint of it (MMEngine format) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f'tiny_{num_landmarks}.py'
    config.write_text(TEST_CONFIG.replace('NUM_LANDMARKS', str(num_landmarks)))
    return config, save_untrained_checkpoint(config, folder / f'tiny_{num_landmarks}.pth', seed=seed)


@pytest.fixture(scope='session')
def test_model(tmp_path_factory) -> tuple[Path, Path]:
    return write_test_model(tmp_path_factory.mktemp('model'))


@pytest.fixture(scope='session')
def synthetic(tmp_path_factory) -> tuple[Path, Path]:
    """A 3-slice synthetic stack and its ground truth (38 landmarks, spacing 0.1 mm)."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp('synthetic'), num_images=3, seed=1)


def run_step5(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(step5.main, [str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_line_error(stderr: str, message: str) -> None:
    """The run ended in one ``error: <file>: <problem>`` line (after any progress bar), no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and message in errors[0] and stderr.rstrip().endswith(errors[0]), stderr
    assert 'Traceback' not in stderr


def step5_args(model: tuple[Path, Path], stack: Path, out: Path, *extra) -> list:
    return ['--config_file', model[0], '--load_weight_path', model[1], '--load_mha_path', stack,
            '--save_json_path', out, '--device', 'cpu', *extra]


# ------------------------------------------------------------------------------------------ happy paths
def test_step5_writes_challenge_json_and_scores_it(test_model, synthetic, tmp_path):
    stack, gt_path = synthetic
    out = tmp_path / 'pred.json'
    _, metrics = step5.predict_stack_to_json(*test_model, stack, out, device='cpu', gt_json=gt_path,
                                             progress=False)
    document = json.loads(out.read_text())
    assert prediction_schema_problems(document) == []
    points = document['points']
    assert [(p['point'][2], int(p['name'])) for p in points] == [(z, k) for z in (1, 2, 3) for k in range(1, 39)]

    # Recompute MRE / SDR from the written JSON and the ground truth with plain numpy, not cldetection.metric.
    gt = json.loads(gt_path.read_text())['points']
    truth = {(p['point'][2], p['name']): (p['point'][:2], float(p['scale'])) for p in gt}
    errors = np.array([math.dist(p['point'][:2], truth[(p['point'][2], p['name'])][0])
                       * truth[(p['point'][2], p['name'])][1] for p in points])
    assert metrics['MRE'] == pytest.approx(errors.mean(), rel=1e-6)
    assert metrics['MRE_SD'] == pytest.approx(errors.std(), rel=1e-6)
    for radius in (2.0, 2.5, 3.0, 4.0):
        assert metrics[f'SDR {radius}mm'] == pytest.approx(100 * np.mean(errors <= radius + 1e-9))
    assert metrics['images'] == 3 and metrics['landmarks'] == 3 * 38


@pytest.fixture(scope='module')
def predictor(test_model) -> LandmarkPredictor:
    return LandmarkPredictor(*test_model, device='cpu', batch_size=1)


def test_stack_coordinates_are_those_of_the_unpadded_image(predictor, synthetic):
    """Cropping the padding (bottom/right only) leaves coordinates unchanged, and batching changes nothing."""
    stack, _ = synthetic
    prediction = predictor.predict_stack(stack, progress=False)
    from_stack = prediction.points
    assert sorted(prediction.scores) == [1, 2, 3] and prediction.scores[1].shape == (38,)  # one score per point
    assert np.isfinite(prediction.scores[1]).all()
    images = [crop_zero_padding(img) for _, img in read_stack_slices(stack)]
    assert images[0].shape[:2] != (2400, 2880)  # the synthetic slices really are padded
    direct = predictor.predict_images(images)
    for z in (1, 2, 3):
        np.testing.assert_allclose(from_stack[z], direct[z - 1], atol=1e-6)
    predictor.batch_size = 3
    try:
        batched = predictor.predict_images(images)
    finally:
        predictor.batch_size = 1
    np.testing.assert_allclose(batched, direct, atol=1e-3)
    # A different image size must give different coordinates: the box is the cropped image, not the slice.
    smaller = predictor.predict_images([np.ascontiguousarray(images[0][:-200, :-200])])[0]
    assert not np.allclose(smaller, direct[0])


def test_stack_prediction_equals_mmpose_inference_on_step2_images(predictor, synthetic, tmp_path):
    """What step 5 predicts from the stack is what MMPose's own ``inference_topdown`` predicts from the PNG
    that step 2 wrote for training and step 4 (same pixels, channel order, box and pipeline)."""
    from mmpose.apis import inference_topdown

    from cldetection.dataset import CephalometricDataset

    from cldetection.prepare import prepare_coco_dataset

    grey_stack, gt_path = synthetic
    # tinted, so that a swap of red and blue anywhere would change the input (grey images hide it)
    tint = np.array([1.0, 0.75, 0.5])
    stack = write_stack(((image * tint).astype(np.uint8) for _, image in read_stack_slices(grey_stack)),
                        tmp_path / 'colour.mha', 3)
    prepare_coco_dataset(stack, gt_path, tmp_path / 'coco', progress=False)
    test_slices = [image['id'] for image in json.loads((tmp_path / 'coco' / 'test.json').read_text())['images']]
    prediction, metrics = step5.predict_stack_to_json(*predictor_files(predictor), stack, tmp_path / 'p.json',
                                                      device='cpu', gt_json=gt_path, slices=test_slices,
                                                      progress=False)
    assert sorted(prediction.points) == test_slices and metrics['images'] == len(test_slices)
    # the box as the training / step 4 dataset makes it from step 2's annotation
    dataset = CephalometricDataset(data_root=str(tmp_path / 'coco'), ann_file='test.json',
                                   data_prefix=dict(img='images/'), test_mode=True, pipeline=[])
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        reference = inference_topdown(predictor.model, info['img_path'], bboxes=info['bbox'], bbox_format='xyxy')
        np.testing.assert_allclose(prediction.points[info['img_id']], reference[0].pred_instances.keypoints[0],
                                   atol=1e-4)


def predictor_files(predictor: LandmarkPredictor) -> tuple[Path, Path]:
    return predictor.config_file, predictor.checkpoint_file


def test_gt_json_with_missing_landmarks_scores_the_rest(test_model, synthetic, tmp_path):
    stack, gt_path = synthetic
    gt = load_landmarks(gt_path)
    del gt.points[2][5], gt.points[3][38]
    partial = write_json_atomic(ground_truth_document({z: gt.points[z] for z in (2, 3)}, gt.spacing),
                                tmp_path / 'partial-gt.json')
    prediction, metrics = step5.predict_stack_to_json(*test_model, stack, tmp_path / 'p.json', device='cpu',
                                                      gt_json=partial, progress=False)
    assert metrics['images'] == 2 and metrics['landmarks'] == 2 * 38 - 2
    again = evaluate_points(prediction.points, load_landmarks(partial))
    assert again['MRE'] == metrics['MRE']


def test_existing_output_needs_overwrite_and_metrics_are_printed(test_model, synthetic, tmp_path, capsys):
    stack, gt_path = synthetic
    out = tmp_path / 'pred.json'
    out.write_text('precious')
    code, _, err = run_step5(step5_args(test_model, stack, out, '--gt_json', gt_path), capsys)
    assert code == 2 and 'already exists' in err and out.read_text() == 'precious'
    code, stdout, _ = run_step5(step5_args(test_model, stack, out, '--gt_json', gt_path, '--overwrite'), capsys)
    assert code == 0 and prediction_schema_problems(json.loads(out.read_text())) == []
    assert '3 images, 114 landmarks scored' in stdout and 'MRE (mm)' in stdout and 'SDR 2.0mm' in stdout


def test_checkpoint_with_training_metainfo_loads(test_model, tmp_path):
    """A checkpoint laid out as MMEngine's runner saves it: ``meta.dataset_meta`` is the training set's parsed
    metainfo, whose empty skeleton colour array pickles (protocol 2) as a ``builtins.bytes`` call."""
    from mmengine.runner.checkpoint import save_checkpoint
    from mmpose.datasets.datasets.utils import parse_pose_metainfo

    from cldetection.landmarks import cephalometric_metainfo

    state = torch.load(test_model[1], map_location='cpu')['state_dict']
    checkpoint = tmp_path / 'runner_style.pth'
    save_checkpoint({'meta': {'dataset_meta': parse_pose_metainfo(cephalometric_metainfo(38)), 'epoch': 1},
                     'state_dict': state}, str(checkpoint))
    predictor = LandmarkPredictor(test_model[0], checkpoint, device='cpu')
    assert predictor.num_landmarks == 38 and predictor.model.dataset_meta['dataset_name'] == 'cephalometric'


def test_default_config_builds_offline(tmp_path):
    """The default HRNet-W32 config names ImageNet weights to download; loading for prediction never does."""
    config = REPO / 'cldetection_configs' / 'hrnet-w32_udp_512x512.py'
    if not config.is_file():
        pytest.skip(f'{config} not found')
    checkpoint = save_untrained_checkpoint(config, tmp_path / 'default.pth')
    predictor = LandmarkPredictor(config, checkpoint, device='cpu')  # strict load: every weight in place
    assert predictor.num_landmarks == 38 and predictor.model.cfg.model.backbone.init_cfg is None


def test_help_runs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        step5.main(['--help'])
    assert exit_info.value.code == 0 and '--gt_json' in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- bad input
def _write_mha(array: np.ndarray, path: Path, vector: bool = True) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))
    return path


@pytest.mark.parametrize('case, message', [
    ('missing_config', 'config file not found'),
    ('broken_config', 'cannot load the config'),
    ('missing_weights', 'weights file not found'),
    ('garbage_weights', 'not a checkpoint'),
    ('weights_of_other_model', 'weights do not fit the model'),
    ('missing_stack', 'file not found'),
    ('float_stack', 'wrong pixel type'),
    ('grey_stack', 'slice 1 is empty'),  # grey stacks are read (as 3 equal channels); this one is black
    ('four_d_stack', 'expected a 3-D stack'),
    ('blank_slice', 'slice 2 is empty'),
    ('gt_beyond_stack', 'has slice 4'),
    ('bad_device', '--device must be'),
])
def test_bad_input_is_one_line_error_and_writes_nothing(case, message, test_model, synthetic, tmp_path, capsys):
    stack, gt_path = synthetic
    config, weights = test_model
    out = tmp_path / 'pred.json'
    extra: list = []
    if case == 'missing_config':
        config = tmp_path / 'nope.py'
    elif case == 'broken_config':
        config = tmp_path / 'broken.py'
        config.write_text('model = dict(\n')
    elif case == 'missing_weights':
        weights = tmp_path / 'nope.pth'
    elif case == 'garbage_weights':
        weights = tmp_path / 'garbage.pth'
        weights.write_bytes(b'not a checkpoint at all')
    elif case == 'weights_of_other_model':
        weights = write_test_model(tmp_path / 'other', num_landmarks=19)[1]
    elif case == 'missing_stack':
        stack = tmp_path / 'nope.mha'
    elif case == 'float_stack':
        stack = _write_mha(np.zeros((2, 40, 50, 3), np.float32), tmp_path / 'float.mha')
    elif case == 'grey_stack':
        stack = _write_mha(np.zeros((2, 40, 50), np.uint8), tmp_path / 'grey.mha', vector=False)
    elif case == 'four_d_stack':
        stack = _write_mha(np.ones((2, 2, 40, 50, 3), np.uint8), tmp_path / 'four_d.mha')
    elif case == 'blank_slice':
        image = np.full((300, 200), 90, np.uint8)
        stack = write_stack([image, np.zeros_like(image), image], tmp_path / 'blank.mha', 3)
    elif case == 'gt_beyond_stack':
        gt = load_landmarks(gt_path)
        points = {z + 1: gt.points[z] for z in gt.slices}
        gt_path = write_json_atomic(ground_truth_document(points, {z: 0.1 for z in points}), tmp_path / 'gt.json')
        extra = ['--gt_json', gt_path]
    elif case == 'bad_device':
        extra = ['--device', 'tpu']
    code, _, err = run_step5(step5_args((config, weights), stack, out, *extra), capsys)
    assert code == 2
    assert_one_line_error(err, message)
    assert not out.exists() and not list(tmp_path.glob('.pred.json*'))


def test_cuda_request_without_gpu_is_an_input_error():
    if torch.cuda.is_available():
        pytest.skip('a GPU is present')
    from cldetection.errors import InputError
    with pytest.raises(InputError, match='CUDA is not available'):
        resolve_device('cuda')
    assert resolve_device('auto') == 'cpu'


# -------------------------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_three_slice_stack_through_step5(shared_data, test_model, tmp_path, capsys):
    """Three real ISBI/CL-Detection images -> stack builder -> step 5 on CPU, scored against the real truth."""
    from cldetection.stack import main as stack_main

    subset = shared_data / 'cl2023_subset'
    images = [subset / line.strip() for line in (subset / 'images.txt').read_text().splitlines()[:3]]
    stack = tmp_path / 'real3.mha'
    with pytest.raises(SystemExit) as exit_info:
        run_cli(stack_main, ['--images', *map(str, images), '--out', str(stack)])
    assert exit_info.value.code == 0
    gt = load_landmarks(subset / 'train-gt.json')
    gt3 = write_json_atomic(ground_truth_document({z: gt.points[z] for z in (1, 2, 3)}, gt.spacing),
                            tmp_path / 'gt3.json')
    out = tmp_path / 'pred.json'
    code, stdout, _ = run_step5(step5_args(test_model, stack, out, '--gt_json', gt3), capsys)
    assert code == 0
    document = json.loads(out.read_text())
    assert prediction_schema_problems(document) == [] and len(document['points']) == 3 * 38
    assert '3 images, 114 landmarks scored' in stdout


# ------------------------------------------------------------------------------------------ --analysis
def _read_csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


def test_analysis_csv_beside_the_json_from_its_points(test_model, synthetic, tmp_path, capsys):
    """Each slice's row equals the analysis of the written JSON's points; MW uses --spacing."""
    from cldetection.analysis import MEASUREMENT_NAMES, analyse_landmarks

    stack, _ = synthetic
    out = tmp_path / 'pred.json'
    code, stdout, _ = run_step5(step5_args(test_model, stack, out, '--analysis', '--spacing', '0.2'), capsys)
    assert code == 0 and 'pred_analysis.csv' in stdout
    rows = _read_csv(tmp_path / 'pred_analysis.csv')
    assert [r['slice'] for r in rows] == ['1', '2', '3']
    points = load_landmarks(out, require_spacing=False)
    for row in rows:
        z = int(row['slice'])
        xy, _ = points.as_array(z)
        expected = analyse_landmarks(xy, 0.2)
        for name in MEASUREMENT_NAMES:
            if expected[name].class_number is None:
                assert row[name] == '' and row[f'{name}_class'] == '' and name in row['note']
            else:
                assert float(row[name]) == pytest.approx(expected[name].value, abs=1e-3)
                assert row[f'{name}_class'] == str(expected[name].class_number)
        incisors = xy[11] - xy[10]
        assert abs(float(row['MW'])) == pytest.approx(0.2 * math.hypot(*incisors), abs=1e-3)


def test_analysis_csv_is_never_overwritten_without_overwrite(test_model, synthetic, tmp_path, capsys):
    stack, gt_path = synthetic
    out = tmp_path / 'pred.json'
    csv_path = tmp_path / 'pred_analysis.csv'
    csv_path.write_text('precious')
    code, _, err = run_step5(step5_args(test_model, stack, out, '--analysis'), capsys)
    assert code == 2 and 'pred_analysis.csv: already exists' in err
    assert csv_path.read_text() == 'precious' and not out.exists()  # refused before predicting anything
    code, _, _ = run_step5(step5_args(test_model, stack, out, '--analysis', '--gt_json', gt_path, '--overwrite'),
                           capsys)
    assert code == 0 and len(_read_csv(csv_path)) == 3


def test_analysis_needs_the_19_isbi_landmarks(synthetic, tmp_path, capsys):
    stack, _ = synthetic
    small_model = write_test_model(tmp_path / 'model10', num_landmarks=10)
    out = tmp_path / 'pred.json'
    code, _, err = run_step5(step5_args(small_model, stack, out, '--analysis'), capsys)
    assert code == 2 and 'the model predicts 10 landmarks; the cephalometric analysis needs the 19' in err
    assert not out.exists() and not (tmp_path / 'pred_analysis.csv').exists()
    code, _, err = run_step5(step5_args(small_model, stack, out, '--analysis', '--spacing', '0'), capsys)
    assert code == 2 and '--spacing must be a number > 0' in err


# ------------------------------------------------------------------------------- self-training (pseudo gt)
def test_pseudo_gt_is_the_prediction_in_the_ground_truth_layout(test_model, synthetic, tmp_path, capsys):
    """--save_pseudo_gt_path: the same points as the prediction JSON, each with the --spacing as "scale", in a
    file step 2 reads as ground truth."""
    stack, _ = synthetic
    out, pseudo = tmp_path / 'pred.json', tmp_path / 'pseudo-gt.json'
    code, stdout, err = run_step5(step5_args(test_model, stack, out, '--save_pseudo_gt_path', pseudo,
                                             '--spacing', '0.125'), capsys)
    assert code == 0 and 'pseudo-gt.json' in stdout, err
    labels = load_landmarks(pseudo, require_spacing=True)
    predicted = load_landmarks(out, require_spacing=False)
    assert labels.slices == predicted.slices == [1, 2, 3] and labels.num_landmarks == 38
    assert labels.points == predicted.points and set(labels.spacing.values()) == {0.125}


def test_pseudo_gt_takes_the_ground_truth_scale_and_is_never_overwritten(test_model, synthetic, tmp_path, capsys):
    stack, gt_path = synthetic
    out, pseudo = tmp_path / 'pred.json', tmp_path / 'pseudo-gt.json'
    pseudo.write_text('precious')
    code, _, err = run_step5(step5_args(test_model, stack, out, '--save_pseudo_gt_path', pseudo), capsys)
    assert_one_line_error(err, 'pseudo-gt.json: already exists; pass --overwrite')
    assert code == 2 and pseudo.read_text() == 'precious' and not out.exists()
    code, _, err = run_step5(step5_args(test_model, stack, out, '--save_pseudo_gt_path', out), capsys)
    assert code == 2 and 'the pseudo ground truth needs a file of its own' in err and not out.exists()
    code, _, err = run_step5(step5_args(test_model, stack, out, '--save_pseudo_gt_path', pseudo, '--spacing', '-1',
                                        '--overwrite'), capsys)
    assert code == 2 and '--spacing must be a number > 0' in err and pseudo.read_text() == 'precious'
    code, _, _ = run_step5(step5_args(test_model, stack, out, '--save_pseudo_gt_path', pseudo, '--gt_json', gt_path,
                                      '--spacing', '0.5', '--overwrite'), capsys)
    assert code == 0
    assert load_landmarks(pseudo).spacing == load_landmarks(gt_path).spacing  # the known scale wins over --spacing


def test_a_landmark_predicted_outside_its_slice_is_said(caplog) -> None:
    """Seen on a real slice: landmark 1 at y = -4.7 px. The challenge JSON keeps it, but the log says so."""
    import logging

    from cldetection.predict import _warn_outside

    points = np.array([[10.0, -4.7], [5.0, 5.0], [120.0, 3.0]])
    with caplog.at_level(logging.WARNING, logger='cldetection.predict'):
        _warn_outside(Path('stack.mha'), 3, points, (50, 100, 3))
    assert 'stack.mha slice 3: landmark 1 at (10.0, -4.7), 3 at (120.0, 3.0) predicted outside the image' \
           in caplog.text
    caplog.clear()
    _warn_outside(Path('stack.mha'), 3, points[1:2], (50, 100, 3))
    assert caplog.text == ''
