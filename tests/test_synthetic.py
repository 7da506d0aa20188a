"""Synthetic challenge data: format, labels on the drawing, determinism, layout, command line."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cldetection.challenge_io import (CHALLENGE_SLICE_SHAPE, crop_zero_padding, load_landmarks, read_stack_info,
                                      read_stack_slices)
from cldetection.errors import InputError, run_cli
from cldetection.synthetic import (DEFAULT_CONTENT_SIZE, LANDMARK_LAYOUT, _LAYOUT_SHIFT, draw_synthetic_cephalogram,
                                   generate_synthetic_dataset, iter_synthetic_cephalograms, main)

NUM_IMAGES = 4
SEED = 3


@pytest.fixture(scope='module')
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_synthetic_dataset(tmp_path_factory.mktemp('synthetic'), NUM_IMAGES, SEED)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 22), b''):
            digest.update(block)
    return digest.hexdigest()


def _content_and_landmarks(stack: Path, gt: Path):
    landmarks = load_landmarks(gt)
    for z, image in read_stack_slices(stack):
        yield z, image, crop_zero_padding(image), landmarks.as_array(z, 38)[0]


def test_stack_is_challenge_format_with_zero_padding(dataset: tuple[Path, Path]) -> None:
    stack, _ = dataset
    info = read_stack_info(stack)
    assert (info.num_slices, info.height, info.width, info.channels) == (NUM_IMAGES, *CHALLENGE_SLICE_SHAPE, 3)
    sizes = set()
    for z, image in read_stack_slices(stack):
        assert image.dtype == np.uint8 and image.shape == (*CHALLENGE_SLICE_SHAPE, 3)
        assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
        content = crop_zero_padding(image)
        h, w = content.shape[:2]
        sizes.add((h, w))
        # the content is a full rectangle (no zero pixel, so cropping finds its edge) and all else is padding
        assert content.min() >= 1
        assert not image[h:].any() and not image[:, w:].any()
        assert 0.9 * DEFAULT_CONTENT_SIZE[0] <= h <= 1.1 * DEFAULT_CONTENT_SIZE[0]
        assert 0.9 * DEFAULT_CONTENT_SIZE[1] <= w <= 1.1 * DEFAULT_CONTENT_SIZE[1]
    assert len(sizes) > 1  # sizes vary per image, as in the real data


def test_ground_truth_has_38_landmarks_on_the_drawing(dataset: tuple[Path, Path]) -> None:
    stack, gt = dataset
    landmarks = load_landmarks(gt)
    assert landmarks.slices == list(range(1, NUM_IMAGES + 1))
    assert landmarks.num_landmarks == 38 and not landmarks.missing_landmarks(38)
    assert all(spacing == 0.1 for spacing in landmarks.spacing.values())
    points = json.loads(gt.read_text())['points']
    assert {p['scale'] for p in points} == {'0.1'} and len(points) == 38 * NUM_IMAGES
    for z, _, content, coords in _content_and_landmarks(stack, gt):
        h, w = content.shape[:2]
        assert np.all(coords >= 0) and np.all(coords[:, 0] < w) and np.all(coords[:, 1] < h), z
        grey = content[..., 0].astype(int)
        background = np.percentile(grey, 2)
        for k, (x, y) in enumerate(np.rint(coords).astype(int), start=1):
            window = grey[max(y - 4, 0):y + 5, max(x - 4, 0):x + 5]
            assert window.max() > background + 40, f'slice {z} landmark {k} lies on blank background'


def test_labels_sit_on_the_features_they_name() -> None:
    """Soft-tissue profile points are on the skin edge (face to the right) and the incisor tip ends its tooth."""
    for image, landmarks in iter_synthetic_cephalograms(12, seed=11):
        grey = image.astype(int)
        for k in 13, 14, 16, 26, 34:  # upper lip, lower lip, soft pogonion, nose tip, soft glabella
            x, y = np.rint(landmarks[k - 1]).astype(int)
            assert grey[y, x - 6] > grey[y, x + 6] + 25, f'landmark {k} is not on the skin edge'
        tip, apex = landmarks[11], landmarks[20]  # upper incisor tip (12) and root apex (21)
        towards_apex = (apex - tip) / np.linalg.norm(apex - tip)
        inside = np.rint(tip + 5 * towards_apex).astype(int)
        beyond = np.rint(tip - 5 * towards_apex).astype(int)
        assert grey[inside[1], inside[0]] > grey[beyond[1], beyond[0]] + 40


def test_same_seed_same_bytes_other_seed_other_data(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    stack, gt = dataset
    again_stack, again_gt = generate_synthetic_dataset(tmp_path / 'again', NUM_IMAGES, SEED)
    assert again_gt.read_bytes() == gt.read_bytes()
    assert _sha256(again_stack) == _sha256(stack)
    other = list(iter_synthetic_cephalograms(2, SEED + 1))
    first_two = list(iter_synthetic_cephalograms(2, SEED))
    slices = dict(read_stack_slices(stack, [1, 2]))
    for z, (image, landmarks) in enumerate(first_two, start=1):
        # image z does not depend on how many images are generated after it
        assert np.array_equal(crop_zero_padding(slices[z])[..., 0], image)
        assert not np.allclose(other[z - 1][1], landmarks, atol=1.0)
        assert other[z - 1][0].shape != image.shape or not np.array_equal(other[z - 1][0], image)


def _align(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``points`` moved by the similarity transform that best fits them to ``target`` (Procrustes)."""
    p, t = points - points.mean(axis=0), target - target.mean(axis=0)
    u, s, vt = np.linalg.svd(p.T @ t)
    d = np.sign(np.linalg.det(u @ vt))
    s[-1] *= d
    u[:, -1] *= d
    return s.sum() / (p ** 2).sum() * p @ (u @ vt) + target.mean(axis=0)


def test_layout_is_consistent_with_bounded_variation() -> None:
    template = np.array([LANDMARK_LAYOUT[k] for k in range(1, 39)]) + _LAYOUT_SHIFT
    normalised = []
    for image, landmarks in iter_synthetic_cephalograms(16, seed=5):
        h, w = image.shape
        normalised.append(landmarks / [w, h])
        x, y = landmarks[:, 0], landmarks[:, 1]
        assert x[25] == x.max()  # the nose tip (26) is the most anterior landmark
        assert x[0] < x[1] and y[7] > y[1]  # sella behind nasion, menton below nasion
        assert y[11] > y[17] and y[10] < y[7]  # upper incisor tip below ANS, lower incisor tip above menton
        assert x[11] > x[10]  # positive overjet: upper incisor tip in front of the lower one
    normalised = np.array(normalised)
    # pose (position, size, rotation) varies a lot ...
    assert 0.015 < normalised.std(axis=0).min() and normalised.std(axis=0).max() < 0.1
    # ... the shape, once the pose is removed, stays near the template but is not rigid
    shapes = np.array([_align(points, template) for points in normalised])
    assert np.abs(shapes.mean(axis=0) - template).max() < 0.015
    assert np.abs(shapes - template).max() < 0.05
    assert 0.0015 < shapes.std(axis=0).min() and shapes.std(axis=0).max() < 0.025


def test_draw_respects_requested_size() -> None:
    image, landmarks = draw_synthetic_cephalogram(np.random.default_rng(0), (300, 250))
    assert image.shape == (300, 250) and image.dtype == np.uint8
    assert landmarks.shape == (38, 2)
    assert np.all(landmarks >= 0) and np.all(landmarks < [250, 300])


def test_command_line_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ['--out', str(tmp_path), '--num-images', '1', '--height', '200', '--width', '160']
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    assert exit_info.value.code == 0
    stack = tmp_path / 'train_stack.mha'
    before = _sha256(stack)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [*argv, '--seed', '1'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and 'train_stack.mha' in err and '--overwrite' in err and '\n' not in err
    assert _sha256(stack) == before
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [*argv, '--seed', '1', '--overwrite'])
    assert exit_info.value.code == 0
    assert _sha256(stack) != before


@pytest.mark.parametrize('kwargs, problem', [
    (dict(num_images=0), 'number of images'),
    (dict(image_size=(64, 64)), 'content size'),
    (dict(image_size=(2400, 2880)), 'content size'),
    (dict(seed=-1), 'seed'),
])
def test_bad_arguments_are_input_errors(tmp_path: Path, kwargs: dict, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        generate_synthetic_dataset(tmp_path / 'out', **{'num_images': 1, **kwargs})
    assert not (tmp_path / 'out' / 'train_stack.mha').exists()


def test_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    not_a_folder = tmp_path / 'file'
    not_a_folder.write_text('keep me')
    with pytest.raises(InputError, match='not a folder'):
        generate_synthetic_dataset(not_a_folder, 1)
    assert not_a_folder.read_text() == 'keep me'
