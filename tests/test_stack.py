"""The stack builder: challenge layout, refusal to overwrite, one-line errors for bad images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cldetection.challenge_io import read_stack_info, read_stack_slices
from cldetection.errors import run_cli
from cldetection.stack import main


def run_stack(args: list, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(a) for a in args])
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture
def images(tmp_path) -> list[tuple[Path, np.ndarray]]:
    """A grey PNG, an RGB JPEG-free PNG and a palette BMP, with the arrays the stack must hold."""
    rng = np.random.default_rng(0)
    grey = rng.integers(1, 255, (120, 90), dtype=np.uint8)
    rgb = rng.integers(1, 255, (80, 140, 3), dtype=np.uint8)
    palette = Image.fromarray(rng.integers(1, 255, (60, 50), dtype=np.uint8)).convert('P')
    paths = [tmp_path / 'grey.png', tmp_path / 'colour.png', tmp_path / 'palette.bmp']
    Image.fromarray(grey).save(paths[0])
    Image.fromarray(rgb).save(paths[1])
    palette.save(paths[2])
    expected = [np.repeat(grey[:, :, None], 3, axis=2), rgb, np.asarray(palette.convert('RGB'))]
    return list(zip(paths, expected))


def test_builds_challenge_layout(images, tmp_path, capsys):
    out = tmp_path / 'stack.mha'
    code, _ = run_stack(['--images', *[p for p, _ in images], '--out', out], capsys)
    assert code == 0
    info = read_stack_info(out)
    assert (info.num_slices, info.height, info.width, info.channels) == (3, 2400, 2880, 3)
    for (z, padded), (_, expected) in zip(read_stack_slices(out), images):
        h, w = expected.shape[:2]
        np.testing.assert_array_equal(padded[:h, :w], expected)  # top-left, pixel for pixel
        assert not padded[h:].any() and not padded[:, w:].any()  # zero padding right and bottom
        assert padded.dtype == np.uint8


def test_refuses_to_overwrite_without_flag(images, tmp_path, capsys):
    out = tmp_path / 'stack.mha'
    out.write_bytes(b'precious')
    code, err = run_stack(['--images', images[0][0], '--out', out], capsys)
    assert code == 2 and 'already exists' in err and out.read_bytes() == b'precious'
    code, _ = run_stack(['--images', images[0][0], '--out', out, '--overwrite'], capsys)
    assert code == 0 and read_stack_info(out).num_slices == 1


@pytest.mark.parametrize('case, message', [
    ('too_large', 'larger than the challenge slice'),
    ('sixteen_bit', 'image mode is I;16'),
    ('not_an_image', 'not a readable image'),
    ('truncated', 'cannot decode the image'),
    ('missing', 'image not found'),
    ('not_mha', 'must be a .mha file'),
])
def test_bad_input_one_line_error_no_output(case, message, images, tmp_path, capsys):
    out = tmp_path / 'stack.mha'
    bad = tmp_path / 'bad.png'
    if case == 'too_large':
        Image.fromarray(np.ones((2401, 100), np.uint8)).save(bad)
    elif case == 'sixteen_bit':
        Image.fromarray(np.ones((50, 40), np.uint16) * 1000).save(bad)
    elif case == 'not_an_image':
        bad.write_text('hello')
    elif case == 'truncated':
        bad = tmp_path / 'bad.jpg'
        Image.fromarray(np.full((400, 300), 128, np.uint8)).save(bad, quality=90)
        bad.write_bytes(bad.read_bytes()[:400])
    elif case == 'missing':
        bad = tmp_path / 'missing.png'
    elif case == 'not_mha':
        bad, out = images[0][0], tmp_path / 'stack.nii'
    # the bad image comes last: nothing may be written for the good ones before it
    code, err = run_stack(['--images', images[0][0], images[1][0], bad, '--out', out], capsys)
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert code == 2 and len(errors) == 1 and message in errors[0], err
    assert 'Traceback' not in err
    assert not out.exists() and not list(tmp_path.glob('.stack*'))
