"""Challenge formats: stack writing/streaming, padding crop, ground-truth validation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from cldetection.challenge_io import (crop_zero_padding, load_landmarks, pad_to_challenge_slice,
                                      prediction_document, read_stack_info, read_stack_slices, write_stack)
from cldetection.errors import InputError


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 256, size=(50 + 5 * i, 40 + 3 * i, 3), dtype=np.uint8) for i in range(n)]


def test_stack_round_trip_streams_each_slice(tmp_path):
    images = _images()
    path = write_stack(iter(images), tmp_path / 's.mha', len(images), shape=(80, 90))
    info = read_stack_info(path)
    assert (info.num_slices, info.height, info.width, info.channels) == (3, 80, 90, 3)
    slices = dict(read_stack_slices(path))
    assert sorted(slices) == [1, 2, 3]
    for z, image in enumerate(images, start=1):
        assert slices[z].shape == (80, 90, 3) and slices[z].dtype == np.uint8
        np.testing.assert_array_equal(crop_zero_padding(slices[z]), image)
        assert not slices[z][image.shape[0]:].any() and not slices[z][:, image.shape[1]:].any()
    # a chosen slice only, and SimpleITK agrees with our header
    (z, only), = list(read_stack_slices(path, [2]))
    np.testing.assert_array_equal(only, slices[2])
    assert sitk.ReadImage(str(path)).GetSize() == (90, 80, 3)


def test_default_padding_is_the_challenge_slice_size(tmp_path):
    path = write_stack(iter(_images(1)), tmp_path / 's.mha', 1)
    info = read_stack_info(path)
    assert (info.height, info.width) == (2400, 2880)


def test_write_stack_is_atomic_on_bad_slice_count(tmp_path):
    with pytest.raises(ValueError):
        write_stack(iter(_images(2)), tmp_path / 's.mha', 3, shape=(80, 90))
    assert list(tmp_path.iterdir()) == []


def test_crop_keeps_interior_zero_rows_and_coordinates():
    image = np.zeros((10, 12, 3), np.uint8)
    image[0, 0] = 5
    image[6, 8] = 7  # rows 1-5 are zero but interior: kept
    cropped = crop_zero_padding(image)
    assert cropped.shape == (7, 9, 3) and cropped[6, 8, 0] == 7


def test_pad_rejects_images_larger_than_the_slice():
    with pytest.raises(InputError, match='larger than the challenge slice'):
        pad_to_challenge_slice(np.ones((2401, 10), np.uint8), 'big.png')
    with pytest.raises(InputError, match='dtype'):
        pad_to_challenge_slice(np.ones((10, 10), np.uint16), 'x.png')
    grey = pad_to_challenge_slice(np.full((4, 5), 9, np.uint8), 'g.png', shape=(6, 7))
    assert grey.shape == (6, 7, 3) and grey[:4, :5].min() == 9 and grey[4:].max() == 0


def test_truncated_and_non_mha_files_are_rejected(tmp_path):
    path = write_stack(iter(_images(2)), tmp_path / 's.mha', 2, shape=(80, 90))
    data = path.read_bytes()
    (tmp_path / 'cut.mha').write_bytes(data[:-100])
    with pytest.raises(InputError, match='truncated'):
        read_stack_info(tmp_path / 'cut.mha')
    (tmp_path / 'x.mha').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(200))
    with pytest.raises(InputError, match='not a MetaImage'):
        read_stack_info(tmp_path / 'x.mha')
    with pytest.raises(InputError, match='file not found'):
        read_stack_info(tmp_path / 'absent.mha')


def test_wrong_pixel_type_is_rejected(tmp_path):
    grey16 = sitk.GetImageFromArray(np.ones((2, 8, 9), np.uint16))
    sitk.WriteImage(grey16, str(tmp_path / 'u16.mha'))
    with pytest.raises(InputError, match='wrong pixel type: 1 x MET_USHORT'):
        read_stack_info(tmp_path / 'u16.mha')
    rgba = sitk.GetImageFromArray(np.ones((2, 8, 9, 4), np.uint8), isVector=True)
    sitk.WriteImage(rgba, str(tmp_path / 'rgba.mha'))
    with pytest.raises(InputError, match='wrong pixel type: 4 x MET_UCHAR'):
        read_stack_info(tmp_path / 'rgba.mha')
    grey = np.arange(2 * 8 * 9, dtype=np.uint8).reshape(2, 8, 9)  # grey uint8 is read as three equal channels
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(tmp_path / 'u8.mha'))
    assert read_stack_info(tmp_path / 'u8.mha').channels == 1
    slices = dict(read_stack_slices(tmp_path / 'u8.mha'))
    assert slices[2].shape == (8, 9, 3) and (slices[2] == grey[1][:, :, None]).all()


def test_empty_stack_is_rejected(tmp_path):
    header = ('ObjectType = Image\nNDims = 3\nBinaryData = True\nCompressedData = False\nDimSize = 90 80 0\n'
              'ElementNumberOfChannels = 3\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n')
    (tmp_path / 'empty.mha').write_text(header)
    with pytest.raises(InputError, match='empty stack'):
        read_stack_info(tmp_path / 'empty.mha')


def _gt(tmp_path, points):
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps({'name': 'Orthodontic landmarks', 'type': 'Multiple points', 'points': points}))
    return path


def test_ground_truth_is_grouped_by_slice(tmp_path):
    path = _gt(tmp_path, [{'name': 1, 'point': [5, 6, 1], 'scale': '0.1'},
                          {'name': '2', 'point': [7.5, 8, 1], 'scale': '0.1'},
                          {'name': 1, 'point': [1, 2, 2], 'scale': 0.125}])
    gt = load_landmarks(path)
    assert gt.points == {1: {1: (5.0, 6.0), 2: (7.5, 8.0)}, 2: {1: (1.0, 2.0)}}
    assert gt.spacing == {1: 0.1, 2: 0.125}
    assert gt.num_landmarks == 2 and gt.missing_landmarks() == {2: [2]}
    coords, visible = gt.as_array(2)
    assert visible.tolist() == [1, 0] and coords[0].tolist() == [1, 2]


@pytest.mark.parametrize('points, message', [
    ([{'name': 1, 'point': [5, 6, 1]}], 'has no "scale"'),
    ([{'name': 1, 'point': [5, 6, 1], 'scale': '0'}], 'must be a number > 0'),
    ([{'name': 1, 'point': [5, 6, 1], 'scale': '-0.1'}], 'must be a number > 0'),
    ([{'name': 1, 'point': [5, 6, 1], 'scale': 'abc'}], 'must be a number > 0'),
    ([{'name': 1, 'point': [5, 6], 'scale': '0.1'}], 'expected \\[x, y, z\\]'),
    ([{'name': 1, 'point': [5, 6, 0], 'scale': '0.1'}], 'expected a slice number'),
    ([{'name': 'x', 'point': [5, 6, 1], 'scale': '0.1'}], 'expected a number'),
    ([{'name': 1, 'point': [5, 6, 1], 'scale': '0.1'}, {'name': 1, 'point': [5, 6, 1], 'scale': '0.1'}],
     'appears twice'),
    ([], 'empty'),
])
def test_bad_ground_truth_names_file_and_problem(tmp_path, points, message):
    with pytest.raises(InputError, match=message) as err:
        load_landmarks(_gt(tmp_path, points))
    assert str(err.value).startswith(str(tmp_path / 'gt.json'))
    assert '\n' not in str(err.value)


def test_not_json_is_rejected(tmp_path):
    (tmp_path / 'gt.json').write_text('{not json')
    with pytest.raises(InputError, match='not valid JSON'):
        load_landmarks(tmp_path / 'gt.json')


def test_prediction_document_order_and_types():
    doc = prediction_document({2: [[1, 2]], 1: np.array([[3.5, 4.0], [5, 6]])})
    assert doc['name'] == 'Orthodontic landmarks' and doc['type'] == 'Multiple points'
    assert [p['point'] for p in doc['points']] == [[3.5, 4.0, 1], [5.0, 6.0, 1], [1.0, 2.0, 2]]
    assert [p['name'] for p in doc['points']] == ['1', '2', '1']
    assert all(isinstance(v, float) for p in doc['points'] for v in p['point'][:2])
    assert doc['version'] == {'major': 1, 'minor': 0}


def test_written_files_get_normal_permissions(tmp_path):
    from cldetection.challenge_io import write_json_atomic
    stack = write_stack(iter(_images(1)), tmp_path / 's.mha', 1, shape=(80, 90))
    doc = write_json_atomic({'a': 1}, tmp_path / 'a.json')
    for path in (stack, doc):
        assert path.stat().st_mode & 0o044 == 0o044  # group/other readable under the usual umask 022


@pytest.mark.parametrize('channels', [None, 3])
def test_crop_matches_the_organisers_row_and_column_sums(channels):
    rng = np.random.default_rng(1)
    for _ in range(5):
        shape = (60, 70) if channels is None else (60, 70, 3)
        image = np.zeros(shape, np.uint8)
        h, w = rng.integers(1, 60), rng.integers(1, 70)
        image[:h, :w] = rng.integers(0, 2, size=(h, w) + shape[2:], dtype=np.uint8) * 200
        sums = image.reshape(60, 70, -1).astype(np.int64)
        rows, cols = np.flatnonzero(sums.sum(axis=(1, 2))), np.flatnonzero(sums.sum(axis=(0, 2)))
        expected = image[:rows[-1] + 1, :cols[-1] + 1] if rows.size else image
        np.testing.assert_array_equal(crop_zero_padding(image), expected)
