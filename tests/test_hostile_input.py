"""Hostile and unlucky input (issue 39): the strict .mha reader, claimed outputs, ground-truth bounds, JSON
limits. Every case is a one-line error naming the file and the problem, exit 2, and nothing lost."""
from __future__ import annotations

import errno
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cldetection import challenge_io, errors
from cldetection.challenge_io import (DEFAULT_MAX_SLICES, MAX_SLICE_SIDE, load_landmarks, read_json,
                                      read_stack_info, read_stack_slices, write_json_atomic, write_stack)
from cldetection.errors import EXIT_BAD_INPUT, InputError, claim_output, releasing_claims, run_cli
from cldetection.prepare import prepare_coco_dataset
from conftest import make_challenge_stack

import step2_prepare_coco_dataset as step2  # noqa: E402  (repo root is on sys.path via rootdir conftest)
import step5_predict_expected_output as step5  # noqa: E402


def header(dims='9 8 2', channels=3, element='MET_UCHAR', data='LOCAL', **extra) -> str:
    lines = ['ObjectType = Image', f'NDims = {len(dims.split())}', 'BinaryData = True',
             f'CompressedData = {extra.pop("compressed", False)}']
    lines += [f'{key} = {value}' for key, value in extra.items()]
    lines += [f'DimSize = {dims}', f'ElementNumberOfChannels = {channels}', f'ElementType = {element}',
              f'ElementDataFile = {data}']
    return '\n'.join(lines) + '\n'


def write_mha(path: Path, text: str, data: bytes = b'') -> Path:
    path.write_bytes(text.encode('ascii') + data)
    return path


def one_line(err: InputError, path: Path) -> str:
    text = str(err)
    assert '\n' not in text and text.startswith(str(path)), text
    return text


def cli(main, argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(a) for a in argv])
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    return exit_info.value.code, err


# ------------------------------------------------------------------------------------- 1. the .mha reader
@pytest.mark.parametrize('text, message', [
    (header(channels='abc'), 'ElementNumberOfChannels = \'abc\' is not a whole number'),
    (header(dims='2880 2400 3x'), "DimSize = '2880 2400 3x': '3x' is not a whole number"),
    (header(dims='9 -8 2'), "'-8' is not a whole number"),
    (header(dims='9 8 2 1'), 'expected a 3-D stack'),
    (header(channels=2), 'wrong pixel type: 2 x MET_UCHAR'),
    (header(element='MET_FLOAT'), 'wrong pixel type: 3 x MET_FLOAT'),
    (header(dims=f'{MAX_SLICE_SIDE + 1} 8 2'), f'larger than the {MAX_SLICE_SIDE} pixels a side'),
    (header(dims=f'9 8 {DEFAULT_MAX_SLICES + 1}'), 'pass --max-slices'),
    (header(data='../outside/secret.raw'), 'must be LOCAL or a plain file name'),
    (header(data='/etc/passwd'), 'must be LOCAL or a plain file name'),
    (header(data='slice%03d.raw 1 2 1'), 'must be LOCAL or a plain file name'),
    (header(data='LIST'), 'must be LOCAL or a plain file name'),
    (header(data='absent.raw'), 'pixel data file absent.raw named in the header is missing'),
    (header().replace('BinaryData = True', 'BinaryData = False'), 'BinaryData = False'),
    (header().replace('NDims = 3', 'NDims = 2'), 'NDims = 2 but DimSize'),
    ('DimSize = 9 8 2\n' + header(), 'DimSize appears twice'),
    (header(HeaderSize=16), 'HeaderSize is not supported'),
    (header(compressed='maybe'), "CompressedData = 'maybe' is not True or False"),
])
def test_bad_headers_are_one_line_errors_naming_the_field(tmp_path, text, message):
    path = write_mha(tmp_path / 'bad.mha', text, bytes(9 * 8 * 2 * 3))
    with pytest.raises(InputError, match='') as err:
        read_stack_info(path)
    assert message in one_line(err.value, path)


def test_step2_refuses_a_bad_dimsize_token_with_exit_2(tmp_path, capsys):
    """Before: ``DimSize = 2880 2400 3x`` was read as a 2-D image of one slice."""
    stack, gt = make_challenge_stack(tmp_path / 'c', num_slices=3, num_landmarks=4)
    bad = tmp_path / 'bad.mha'
    bad.write_bytes(stack.read_bytes().replace(b'DimSize = 288 240 3', b'DimSize = 288 240 3x'))
    code, err = cli(step2.main, ['--mha_file_path', bad, '--train_gt_path', gt, '--output_dir', tmp_path / 'out'],
                    capsys)
    assert code == EXIT_BAD_INPUT and "bad.mha: header field DimSize = '288 240 3x'" in err
    assert not (tmp_path / 'out').exists()


def test_slice_cap_is_overridable(tmp_path):
    path = write_mha(tmp_path / 'many.mha', header(dims='2 2 12'), bytes(2 * 2 * 12 * 3))
    with pytest.raises(InputError, match='more than the limit of 10; pass --max-slices N'):
        read_stack_info(path, max_slices=10)
    assert read_stack_info(path, max_slices=12).num_slices == 12


def test_sparse_file_of_a_huge_slice_fails_before_allocating(tmp_path):
    path = write_mha(tmp_path / 'sparse.mha', header(dims='26000 26000 1'))
    with open(path, 'r+b') as f:
        f.truncate(path.stat().st_size + 26000 * 26000 * 3)  # 2 GB, sparse
    with pytest.raises(InputError, match='larger than the 4096 pixels a side'):
        read_stack_info(path)


def test_compression_bomb_fails_fast(tmp_path):
    """345 bytes declaring 20000 x 20000 x 1 (1.2 GB inflated); and within the caps, data that cannot inflate
    to the declared size."""
    bomb = zlib.compress(bytes(2**20))[:300]
    path = write_mha(tmp_path / 'bomb.mha', header(dims='20000 20000 1', compressed=True,
                                                   CompressedDataSize=len(bomb)), bomb)
    with pytest.raises(InputError, match='larger than the 4096 pixels a side'):
        read_stack_info(path)
    path = write_mha(tmp_path / 'bomb2.mha', header(dims='4096 4096 100', compressed=True,
                                                    CompressedDataSize=len(bomb)), bomb)
    with pytest.raises(InputError, match='CompressedDataSize = 300 bytes cannot hold'):
        read_stack_info(path, max_slices=100)


def test_compressed_stack_streams_slice_by_slice(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 4, size=(5, 40, 30, 3), dtype=np.uint8)  # z, y, x, channel
    path = tmp_path / 'zipped.mha'
    sitk.WriteImage(sitk.GetImageFromArray(volume, isVector=True), str(path), True)
    assert b'CompressedData = True' in path.read_bytes()[:1000]
    info = read_stack_info(path)
    assert info.compressed_size is not None and (info.num_slices, info.height, info.width) == (5, 40, 30)
    assert all((image == volume[z - 1]).all() for z, image in read_stack_slices(path))
    picked = list(read_stack_slices(path, [4, 2, 5]))  # backwards: the inflater starts again
    assert [z for z, _ in picked] == [4, 2, 5] and all((image == volume[z - 1]).all() for z, image in picked)


def test_compressed_data_shorter_than_declared_is_refused_while_reading(tmp_path):
    data = zlib.compress(bytes(9 * 8 * 3 * 2))  # two of three slices
    path = write_mha(tmp_path / 'short.mha', header(dims='9 8 3', compressed=True, CompressedDataSize=len(data)),
                     data)
    with pytest.raises(InputError, match='truncated: the pixel data ends in slice 3'):
        list(read_stack_slices(path))
    damaged = write_mha(tmp_path / 'damaged.mha', header(dims='9 8 3', compressed=True, CompressedDataSize=40),
                        b'x' * 40)
    with pytest.raises(InputError, match='compressed pixel data is damaged'):
        list(read_stack_slices(damaged))


def test_pixel_data_in_a_plain_file_beside_the_stack(tmp_path):
    volume = np.arange(2 * 8 * 9 * 3, dtype=np.uint8)
    (tmp_path / 'pixels.raw').write_bytes(volume.tobytes())
    path = write_mha(tmp_path / 'split.mha', header(data='pixels.raw'))
    slices = dict(read_stack_slices(path))
    assert (slices[2] == volume.reshape(2, 8, 9, 3)[1]).all()
    (tmp_path / 'outside').mkdir()
    (tmp_path / 'outside' / 'secret.raw').write_bytes(volume.tobytes())
    (tmp_path / 'link.raw').symlink_to(tmp_path / 'outside' / 'secret.raw')
    with pytest.raises(InputError, match='is a link out of the stack'):
        read_stack_info(write_mha(tmp_path / 'linked.mha', header(data='link.raw')))


def test_our_reader_agrees_with_simpleitk(tmp_path):
    images = [np.random.default_rng(i).integers(1, 256, (20 + i, 15, 3), dtype=np.uint8) for i in range(3)]
    path = write_stack(iter(images), tmp_path / 's.mha', 3, shape=(30, 20))
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert all((image == expected[z - 1]).all() for z, image in read_stack_slices(path))


def test_a_bomb_within_the_caps_is_inflated_with_bounded_memory(tmp_path):
    """4096 x 4096 x 8 x 3 zero bytes (400 MB) in 400 kB: inflated one 50 MB slice at a time."""
    import tracemalloc

    slice_bytes, slices = 4096 * 4096 * 3, 8
    deflate = zlib.compressobj(1)
    zero = bytes(slice_bytes)
    data = b''.join(deflate.compress(zero) for _ in range(slices)) + deflate.flush()
    path = write_mha(tmp_path / 'bomb.mha', header(dims=f'4096 4096 {slices}', compressed=True,
                                                   CompressedDataSize=len(data)), data)
    del zero, data
    tracemalloc.start()
    try:
        assert sum(1 for _ in read_stack_slices(path)) == slices
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.2 * slice_bytes, f'peak {peak / 2**20:.0f} MiB reading {slices * slice_bytes / 2**20:.0f} MiB'


# ------------------------------------------------------------------------------------- 2. claimed outputs
def test_claim_creates_the_output_exclusively_and_refuses_a_second_writer(tmp_path):
    out = tmp_path / 'sub' / 'out.json'
    with claim_output(out) as claim:
        assert out.is_file() and out.stat().st_size == 0  # the placeholder, under the real name
        with pytest.raises(InputError, match='already exists: another run is writing it'):
            claim_output(out)
        with pytest.raises(InputError, match='is being written by another run'):
            claim_output(out, overwrite=True)
    assert not out.exists()  # released unwritten: the placeholder is gone
    with claim_output(out) as claim:
        write_json_atomic({'a': 1}, claim)
    assert json.loads(out.read_text()) == {'a': 1}
    with pytest.raises(InputError, match='already exists; pass --overwrite'):
        claim_output(out)
    with claim_output(out, overwrite=True):  # --overwrite: locked, kept until replaced
        assert json.loads(out.read_text()) == {'a': 1}
    assert json.loads(out.read_text()) == {'a': 1}


def test_an_empty_file_left_by_a_killed_run_is_named_so(tmp_path):
    (tmp_path / 'out.json').write_bytes(b'')
    with pytest.raises(InputError, match=r'already exists \(an empty file: perhaps left by a run that was killed\)'):
        claim_output(tmp_path / 'out.json')


def test_claims_end_with_their_block(tmp_path):
    with pytest.raises(InputError, match='later'), releasing_claims():
        claim_output(tmp_path / 'a.json')
        claim_output(tmp_path / 'b.json')
        errors.fail(None, 'later')
    assert list(tmp_path.iterdir()) == []


def _fail_for(monkeypatch, module, name: str, target: Path, err: OSError) -> None:
    real = getattr(module, name)

    def patched(path, *args, **kwargs):
        if str(path).startswith(str(target)):
            raise err
        return real(path, *args, **kwargs)
    monkeypatch.setattr(module, name, patched)


def test_unwritable_output_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """As root here, so the permission error is simulated where the output is created."""
    out = tmp_path / 'pred.json'
    _fail_for(monkeypatch, os, 'open', out, PermissionError(errno.EACCES, 'Permission denied', str(out)))
    code, err = cli(step5.main, ['--config_file', tmp_path / 'no-config.py', '--load_weight_path',
                                 tmp_path / 'no.pth', '--load_mha_path', tmp_path / 'no.mha', '--save_json_path', out],
                    capsys)
    assert code == EXIT_BAD_INPUT and f'error: {out}: cannot write: Permission denied' in err


def test_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(challenge_io.os, 'fsync', no_space)
    with pytest.raises(InputError) as err:
        write_json_atomic({'a': 1}, tmp_path / 'out.json')
    assert one_line(err.value, tmp_path / 'out.json').endswith('cannot write: No space left on device')
    assert list(tmp_path.iterdir()) == []


def test_step5_is_refused_while_another_run_writes_its_output(tmp_path, capsys):
    out = tmp_path / 'pred.json'
    with claim_output(out, overwrite=True):
        code, err = cli(step5.main, ['--config_file', tmp_path / 'c.py', '--load_weight_path', tmp_path / 'w.pth',
                                     '--load_mha_path', tmp_path / 's.mha', '--save_json_path', out, '--overwrite'],
                        capsys)
    assert code == EXIT_BAD_INPUT and 'pred.json: is being written by another run' in err
    assert not out.exists()


def test_process_py_and_the_stack_builder_claim_their_outputs(tmp_path, capsys):
    from cldetection.grand_challenge import INPUT_SUBDIR, OUTPUT_NAME, run_algorithm
    from cldetection.stack import main as stack_main

    stack, _ = make_challenge_stack(tmp_path / 'c', num_slices=2, num_landmarks=4)
    (tmp_path / 'in' / INPUT_SUBDIR).mkdir(parents=True)
    os.link(stack, tmp_path / 'in' / INPUT_SUBDIR / 'stack.mha')
    output = tmp_path / 'out' / OUTPUT_NAME
    with claim_output(output, overwrite=True):
        with pytest.raises(InputError, match='is being written by another run'):
            run_algorithm(tmp_path / 'in', tmp_path / 'out', tmp_path / 'c.py', tmp_path / 'w.pth', overwrite=True)
    assert not output.exists()
    with pytest.raises(InputError, match='not found'):  # claimed, then the model fails: no output left
        run_algorithm(tmp_path / 'in', tmp_path / 'out', tmp_path / 'c.py', tmp_path / 'w.pth')
    assert not output.exists()

    import cv2
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((20, 30), 7, np.uint8))
    with claim_output(tmp_path / 'new.mha', overwrite=True):
        code, err = cli(stack_main, ['--images', tmp_path / 'a.png', '--out', tmp_path / 'new.mha', '--overwrite'],
                        capsys)
    assert code == EXIT_BAD_INPUT and 'new.mha: is being written by another run' in err
    code, err = cli(stack_main, ['--images', tmp_path / 'a.png', tmp_path / 'absent.png', '--out',
                                 tmp_path / 'new.mha'], capsys)
    assert code == EXIT_BAD_INPUT and not (tmp_path / 'new.mha').exists()


def test_step2_rolls_back_what_it_wrote(tmp_path, monkeypatch, capsys):
    """A full disk at the third image: the run stops in one line and removes what it had written, so the
    same command runs again once there is room."""
    from cldetection import prepare

    stack, gt = make_challenge_stack(tmp_path / 'c', num_slices=4, num_landmarks=4)
    out = tmp_path / 'data' / 'coco'
    real, calls = prepare.cv2.imwrite, []

    def third_fails(path, image, *args):
        calls.append(path)
        return len(calls) != 3 and real(path, image, *args)
    monkeypatch.setattr(prepare.cv2, 'imwrite', third_fails)
    argv = ['--mha_file_path', stack, '--train_gt_path', gt, '--output_dir', out, '--no-progress']
    code, err = cli(step2.main, argv, capsys)
    assert code == EXIT_BAD_INPUT and '3.png: could not write the PNG' in err
    assert not (tmp_path / 'data').exists()  # the folders it created went too
    out.mkdir(parents=True)
    calls.clear()
    code, err = cli(step2.main, argv, capsys)
    assert code == EXIT_BAD_INPUT and out.is_dir() and list(out.iterdir()) == []  # a folder it found stays
    monkeypatch.setattr(prepare.cv2, 'imwrite', real)
    code, _ = cli(step2.main, argv, capsys)
    assert code == 0 and len(list((out / 'images').iterdir())) == 4


def test_step2_refuses_a_folder_another_step2_is_writing(tmp_path):
    from cldetection.prepare import _OutputFolder

    stack, gt = make_challenge_stack(tmp_path / 'c', num_slices=3, num_landmarks=4)
    holder = _OutputFolder(tmp_path / 'out', overwrite=False)
    try:
        with pytest.raises(InputError, match='another step 2 run is writing into this folder'):
            prepare_coco_dataset(stack, gt, tmp_path / 'out', overwrite=True, progress=False)
    finally:
        holder.release()
    assert list((tmp_path / 'out').iterdir()) == []


# ------------------------------------------------------------------------------------- 3. ground truth
def _gt(path: Path, points: list[dict]) -> Path:
    path.write_text(json.dumps({'points': points}))
    return path


def test_points_outside_the_image_are_refused_unless_marked_invisible(tmp_path, capsys):
    stack, gt = make_challenge_stack(tmp_path / 'c', num_slices=3, num_landmarks=4)
    document = json.loads(gt.read_text())
    document['points'][5]['point'][0] = 280.0  # slice 2 is 160 wide (zero padding cropped), the stack 288
    gt.write_text(json.dumps(document))
    argv = ['--mha_file_path', stack, '--train_gt_path', gt, '--output_dir', tmp_path / 'out', '--no-progress']
    code, err = cli(step2.main, argv, capsys)
    assert code == EXIT_BAD_INPUT and 'train-gt.json: slice 2: landmark 2 at (280, ' in err
    assert 'lies outside the 160 x 198 image' in err and '--outside-as-invisible' in err
    assert not (tmp_path / 'out').exists()
    code, _ = cli(step2.main, [*argv, '--outside-as-invisible'], capsys)
    assert code == 0
    annotations = {a['image_id']: a for name in ('train', 'valid', 'test')
                   for a in json.loads((tmp_path / 'out' / f'{name}.json').read_text())['annotations']}
    assert annotations[2]['keypoints'][3 * 1 + 2] == 0 and annotations[2]['num_keypoints'] == 3


def test_a_huge_landmark_name_is_refused_before_anything_is_allocated(tmp_path):
    path = _gt(tmp_path / 'gt.json', [{'name': '2000000000', 'point': [1, 2, 1], 'scale': '0.1'}])
    with pytest.raises(InputError, match='landmark name 2000000000; at most 1000 landmarks are read'):
        load_landmarks(path)
    assert load_landmarks(_gt(tmp_path / 'ok.json', [{'name': '1000', 'point': [1, 2, 1], 'scale': '0.1'}]),
                          ).num_landmarks == 1000


@pytest.mark.parametrize('reader', ['ground truth', 'inputs.json'])
def test_deeply_nested_and_huge_json_are_one_line_errors(tmp_path, reader):
    from cldetection.grand_challenge import INPUTS_JSON, input_stack_folder

    path = tmp_path / (INPUTS_JSON if reader == 'inputs.json' else 'gt.json')
    read = (lambda: input_stack_folder(tmp_path)) if reader == 'inputs.json' else (lambda: load_landmarks(path))
    path.write_text('[' * 200_000 + ']' * 200_000)
    with pytest.raises(InputError, match='nested too deeply') as err:
        read()
    one_line(err.value, path)
    with open(path, 'wb') as f:
        f.truncate(challenge_io.MAX_JSON_BYTES + 1)  # sparse
    with pytest.raises(InputError, match='larger than the 64 MiB a JSON input may have'):
        read()
    path.write_bytes(b'{"points": "\xff"}')
    with pytest.raises(InputError, match='not UTF-8'):
        read_json(path)
