"""Step 2: COCO dataset preparation, splits, and every bad input the issue names."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from cldetection.challenge_io import ground_truth_document, load_landmarks, write_json_atomic, write_stack
from cldetection.errors import EXIT_BAD_INPUT, run_cli
from cldetection.prepare import kfold_assignment, prepare_coco_dataset, split_by_fold, split_by_ratio
from conftest import REPO_ROOT, make_challenge_stack

import step2_prepare_coco_dataset as step2  # noqa: E402  (repo root is on sys.path via rootdir conftest)


def _run_step2(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(step2.main, list(argv))
    return exit_info.value.code, capsys.readouterr().err


def _args(stack: Path, gt: Path, out: Path, *extra: str) -> list[str]:
    return ['--mha_file_path', str(stack), '--train_gt_path', str(gt), '--output_dir', str(out), '--no-progress',
            *extra]


def test_writes_cropped_images_and_coco_json(tmp_path, small_stack):
    stack, gt_path = small_stack
    result = prepare_coco_dataset(stack, gt_path, tmp_path / 'out', progress=False)
    gt = load_landmarks(gt_path)
    seen = []
    for split in ('train', 'valid', 'test'):
        doc = json.loads((tmp_path / 'out' / f'{split}.json').read_text())
        assert doc['categories'][0]['keypoints'][0] == 'sella' and len(doc['categories'][0]['keypoints']) == 38
        for image, ann in zip(doc['images'], doc['annotations']):
            z = image['id']
            seen.append(z)
            png = cv2.imread(str(tmp_path / 'out' / 'images' / image['file_name']))
            assert png.shape[:2] == (image['height'], image['width']) == (200 - z, 160)  # padding cropped
            assert image['spacing'] == pytest.approx(0.1)
            assert ann['image_id'] == z and ann['bbox'] == [0, 0, image['width'], image['height']]
            assert ann['area'] == image['width'] * image['height'] and ann['num_keypoints'] == 38
            keypoints = np.array(ann['keypoints']).reshape(-1, 3)
            expected, _ = gt.as_array(z)
            np.testing.assert_allclose(keypoints[:, :2], expected)  # coordinates unchanged by the crop
            assert set(keypoints[:, 2]) == {2}
    assert sorted(seen) == [1, 2, 3, 4]
    assert {k: len(v) for k, v in result.splits.items()} == {'train': 2, 'valid': 1, 'test': 1}


def test_ratio_split_is_a_seeded_partition():
    splits = split_by_ratio(range(1, 41), (0.75, 0.125, 0.125), seed=3)
    assert [len(splits[s]) for s in ('train', 'valid', 'test')] == [30, 5, 5]
    assert sorted(sum(splits.values(), [])) == list(range(1, 41))
    assert split_by_ratio(range(1, 41), seed=3) == splits != split_by_ratio(range(1, 41), seed=4)


def test_kfold_test_folds_partition_the_images_and_valid_never_overlaps_test():
    slices = list(range(1, 24))
    tests = []
    for fold in range(5):
        split = split_by_fold(slices, 5, fold, seed=0)
        assert not set(split['test']) & (set(split['train']) | set(split['valid']))
        assert sorted(sum(split.values(), [])) == slices and len(split['valid']) == 3
        tests += split['test']
    assert sorted(tests) == slices
    assert {len(f) for f in kfold_assignment(slices, 5)} == {4, 5}


def test_kfold_from_the_command_line(tmp_path, small_stack, capsys):
    stack, gt = small_stack
    code, err = _run_step2(capsys, *_args(stack, gt, tmp_path / 'f', '--folds', '4', '--fold', '1'))
    assert code == 0, err
    test_ids = [im['id'] for im in json.loads((tmp_path / 'f' / 'test.json').read_text())['images']]
    assert test_ids == kfold_assignment(range(1, 5), 4)[1]


def test_refuses_non_empty_output_then_overwrite_keeps_other_files(tmp_path, small_stack, capsys):
    stack, gt = small_stack
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')
    code, err = _run_step2(capsys, *_args(stack, gt, out))
    assert code == EXIT_BAD_INPUT and str(out) in err and 'not empty' in err
    assert sorted(p.name for p in out.iterdir()) == ['notes.txt']
    code, err = _run_step2(capsys, *_args(stack, gt, out, '--overwrite'))
    assert code == 0, err
    assert (out / 'notes.txt').read_text() == 'mine' and (out / 'train.json').is_file()


def test_original_image_save_dir_flag_is_accepted(tmp_path, small_stack, capsys):
    stack, gt = small_stack
    code, _ = _run_step2(capsys, '--mha_file_path', str(stack), '--train_gt_path', str(gt),
                         '--image_save_dir', str(tmp_path / 'o'), '--no-progress')
    assert code == 0 and (tmp_path / 'o' / 'valid.json').is_file()


def test_allow_missing_keeps_images_with_visibility_zero(tmp_path, capsys):
    stack, gt_path = make_challenge_stack(tmp_path / 'c', num_slices=3, num_landmarks=5)
    gt = load_landmarks(gt_path)
    del gt.points[2][4]
    write_json_atomic(ground_truth_document(gt.points, gt.spacing), gt_path)
    code, err = _run_step2(capsys, *_args(stack, gt_path, tmp_path / 'o1'))
    assert code == EXIT_BAD_INPUT and 'slice 2: 4' in err and '--allow-missing' in err
    assert not (tmp_path / 'o1' / 'train.json').exists()
    code, err = _run_step2(capsys, *_args(stack, gt_path, tmp_path / 'o2', '--allow-missing'))
    assert code == 0, err
    anns = {a['image_id']: a for s in ('train', 'valid', 'test')
            for a in json.loads((tmp_path / 'o2' / f'{s}.json').read_text())['annotations']}
    assert anns[2]['keypoints'][3 * 3 + 2] == 0 and anns[2]['num_keypoints'] == 4 and anns[1]['num_keypoints'] == 5


# ------------------------------------------------------------------------------------------- bad input
def _rewrite_gt(gt_path: Path, edit) -> Path:
    doc = json.loads(gt_path.read_text())
    edit(doc['points'])
    gt_path.write_text(json.dumps(doc))
    return gt_path


def _bad_inputs(tmp_path: Path) -> dict:
    stack, gt = make_challenge_stack(tmp_path / 'ok', num_slices=3, num_landmarks=4)
    cases = {}
    cases['missing stack'] = (tmp_path / 'nope.mha', gt, 'nope.mha: file not found')
    cases['missing gt'] = (stack, tmp_path / 'nope.json', 'nope.json: file not found')
    junk = tmp_path / 'junk.mha'
    junk.write_bytes(b'GIF89a' + bytes(64))
    cases['not an mha'] = (junk, gt, 'junk.mha: not a MetaImage')
    cut = tmp_path / 'cut.mha'
    cut.write_bytes(stack.read_bytes()[:-1000])
    cases['truncated'] = (cut, gt, 'cut.mha: truncated')
    four, _ = make_challenge_stack(tmp_path / 'four', num_slices=4, num_landmarks=4)
    cases['slice count != gt z range'] = (four, gt, 'the stack has 4 slices but the ground truth covers slices 1..3')
    beyond = _rewrite_gt(make_challenge_stack(tmp_path / 'z', num_slices=3, num_landmarks=4)[1],
                         lambda pts: pts.append({'name': 1, 'point': [1, 1, 7], 'scale': '0.1'}))
    cases['point z outside the stack'] = (stack, beyond, 'has z = 7, outside the stack of 3 slices')
    missing = _rewrite_gt(make_challenge_stack(tmp_path / 'm', num_slices=3, num_landmarks=4)[1],
                          lambda pts: pts.pop(5))
    cases['image missing landmarks'] = (stack, missing, 'miss landmarks of 1..4: slice 2: 2')
    u16 = tmp_path / 'u16.mha'
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 20, 20), np.uint16)), str(u16))
    cases['wrong dtype'] = (u16, gt, 'u16.mha: wrong pixel type: 1 x MET_USHORT')
    rgba = tmp_path / 'rgba.mha'
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 20, 20, 4), np.uint8), isVector=True), str(rgba))
    cases['wrong channel count'] = (rgba, gt, 'rgba.mha: wrong pixel type: 4 x MET_UCHAR')
    empty = tmp_path / 'empty.mha'
    empty.write_text('ObjectType = Image\nNDims = 3\nDimSize = 288 240 0\nElementNumberOfChannels = 3\n'
                     'ElementType = MET_UCHAR\nElementDataFile = LOCAL\n')
    cases['empty stack'] = (empty, gt, 'empty.mha: empty stack')
    blank_images = [np.full((200, 160), 9, np.uint8), np.zeros((200, 160), np.uint8), np.full((200, 160), 9, np.uint8)]
    blank = write_stack(iter(blank_images), tmp_path / 'blank.mha', 3, shape=(240, 288))  # gt's points inside
    cases['all-zero slice'] = (blank, gt, 'blank.mha: slice 2 is empty (all zero)')
    no_scale = _rewrite_gt(make_challenge_stack(tmp_path / 's', num_slices=3, num_landmarks=4)[1],
                           lambda pts: pts[2].pop('scale'))
    cases['spacing missing'] = (stack, no_scale, 'has no "scale"')
    zero_scale = _rewrite_gt(make_challenge_stack(tmp_path / 's0', num_slices=3, num_landmarks=4)[1],
                             lambda pts: pts[2].update(scale='0'))
    cases['spacing <= 0'] = (stack, zero_scale, 'must be a number > 0')
    return cases


BAD_INPUT_CASES = ['missing stack', 'missing gt', 'not an mha', 'truncated', 'slice count != gt z range',
                   'point z outside the stack', 'image missing landmarks', 'wrong dtype', 'wrong channel count',
                   'empty stack', 'all-zero slice', 'spacing missing', 'spacing <= 0']


@pytest.mark.parametrize('case', BAD_INPUT_CASES)
def test_bad_input_is_one_line_exit_2_and_writes_no_json(tmp_path, capsys, case):
    stack, gt, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / 'out'
    code, err = _run_step2(capsys, *_args(stack, gt, out))
    assert code == EXIT_BAD_INPUT
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and 'Traceback' not in err  # log lines may precede
    assert message in errors[0]
    assert not list(out.glob('*.json'))


def test_command_line_entry_point(tmp_path, small_stack):
    stack, gt = small_stack
    ok = subprocess.run([sys.executable, str(REPO_ROOT / 'step2_prepare_coco_dataset.py'),
                         *_args(stack, gt, tmp_path / 'out')], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert 'train 2, valid 1, test 1 images' in ok.stdout
    bad = subprocess.run([sys.executable, str(REPO_ROOT / 'step2_prepare_coco_dataset.py'),
                          *_args(stack, tmp_path / 'absent.json', tmp_path / 'out2')], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == f'error: {tmp_path / "absent.json"}: file not found'


def test_real_images_through_step2(tmp_path, shared_data):
    """Three real CL-Detection 2023 images, stacked as the organisers did, through step 2."""
    subset = shared_data / 'cl2023_subset'
    files = (subset / 'images.txt').read_text().split()[:3]
    images = [cv2.imread(str(subset / f), cv2.IMREAD_GRAYSCALE) for f in files]
    stack = write_stack(iter(images), tmp_path / 'train_stack.mha', 3)
    full = load_landmarks(subset / 'train-gt.json')
    gt = write_json_atomic(ground_truth_document({z: full.points[z] for z in (1, 2, 3)},
                                                 {z: full.spacing[z] for z in (1, 2, 3)}), tmp_path / 'gt.json')
    result = prepare_coco_dataset(stack, gt, tmp_path / 'out', ratios=(1 / 3, 1 / 3, 1 / 3), progress=False)
    assert result.num_landmarks == 38
    for split in ('train', 'valid', 'test'):
        (image,) = json.loads((tmp_path / 'out' / f'{split}.json').read_text())['images']
        source = images[image['id'] - 1]
        assert (image['height'], image['width']) == source.shape == (2400, 1935)
        png = cv2.imread(str(tmp_path / 'out' / 'images' / image['file_name']), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(png, source)


# --------------------------------------------------------------------------------- extra training stacks
def test_extra_training_stacks_join_the_training_split_only(tmp_path, small_stack, capsys):
    """--extra_train STACK GT (repeatable): every slice goes to train.json with ids i * 100000 + z and images
    under images/extra<i>/; valid and test hold the main stack's slices only, split as without extras."""
    stack, gt_path = small_stack
    extra_stack, extra_gt = make_challenge_stack(tmp_path / 'extra', num_slices=3, seed=5)
    code, err = _run_step2(capsys, *_args(stack, gt_path, tmp_path / 'plain'))
    assert code == 0, err
    code, err = _run_step2(capsys, *_args(stack, gt_path, tmp_path / 'out', '--extra_train', str(extra_stack),
                                          str(extra_gt), '--extra_train', str(extra_stack), str(extra_gt)))
    assert code == 0, err
    for split in ('valid', 'test'):
        assert (tmp_path / 'out' / f'{split}.json').read_text().split('"info"')[0] == \
            (tmp_path / 'plain' / f'{split}.json').read_text().split('"info"')[0]
    train = json.loads((tmp_path / 'out' / 'train.json').read_text())
    plain_ids = [img['id'] for img in json.loads((tmp_path / 'plain' / 'train.json').read_text())['images']]
    assert [img['id'] for img in train['images']] == plain_ids + [100001, 100002, 100003, 200001, 200002, 200003]
    assert [a['image_id'] for a in train['annotations']] == [img['id'] for img in train['images']]
    assert len({a['id'] for a in train['annotations']}) == len(train['annotations'])
    truth = load_landmarks(extra_gt)
    for img, ann in zip(train['images'][len(plain_ids):], train['annotations'][len(plain_ids):]):
        z = img['id'] % 100000
        assert img['file_name'] == f'extra{img["id"] // 100000}/{z}.png'
        png = cv2.imread(str(tmp_path / 'out' / 'images' / img['file_name']))
        assert png.shape[:2] == (img['height'], img['width'])
        np.testing.assert_allclose(np.array(ann['keypoints']).reshape(-1, 3)[:, :2], truth.as_array(z)[0])
    assert train['info']['extra_train'] == [[str(extra_stack), str(extra_gt)]] * 2


def test_extra_training_stack_errors_name_the_file_and_write_nothing(tmp_path, small_stack, capsys):
    stack, gt_path = small_stack
    extra_stack, extra_gt = make_challenge_stack(tmp_path / 'extra', num_slices=3, seed=5)
    _, fewer = make_challenge_stack(tmp_path / 'fewer', num_slices=3, num_landmarks=19, seed=5)
    _, two = make_challenge_stack(tmp_path / 'two', num_slices=2, seed=5)
    cases = [((extra_stack, tmp_path / 'absent.json'), 'absent.json: file not found'),
             ((tmp_path / 'absent.mha', extra_gt), 'absent.mha: file not found'),
             ((extra_stack, fewer), 'fewer/train-gt.json: has 19 landmarks, the main ground truth has 38'),
             ((extra_stack, two), 'the stack has 3 slices but the ground truth covers slices 1..2')]
    for (extra, labels), message in cases:
        out = tmp_path / 'out'
        code, err = _run_step2(capsys, *_args(stack, gt_path, out, '--extra_train', str(extra), str(labels)))
        assert code == EXIT_BAD_INPUT and message in err.strip().splitlines()[-1], err
        assert not out.exists()
