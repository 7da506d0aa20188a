"""int8 networks (cldetection.quantize): the command writes them beside the weights, step 5 uses them on request
and by default, their landmarks stay near the float32 ones, and every error path is one line."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CASCADE
from test_predict import assert_one_line_error, run_step5

from cldetection import quantize
from cldetection.calibrate import read_labelled_images
from cldetection.errors import run_cli
from cldetection.image_io import read_radiograph
from cldetection.inference_engine import INT8_SUFFIX, cache_folder, engine_installed
from cldetection.predict import LandmarkPredictor

pytestmark = pytest.mark.skipif(not engine_installed('onnxruntime'),
                                reason='onnxruntime / onnx not installed (make install: requirements.lock)')


@pytest.fixture(scope='module')
def quantized(trained_cascade, tmp_path_factory) -> tuple[Path, Path, Path]:
    """A copy of the 2-epoch tiny cascade (its own folder: the int8 files go beside it) quantised on 4 of its
    training images with the real command line; returns (coco folder, checkpoint, folder of the ONNX files)."""
    coco, checkpoint = trained_cascade
    folder = tmp_path_factory.mktemp('quantized')
    weights = Path(shutil.copy(checkpoint, folder / 'model.pth'))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(quantize.main, ['--config_file', str(TINY_CASCADE), '--load_weight_path', str(weights),
                                '--images', str(coco / 'images'), '--num-images', '4'])
    assert exit_info.value.code == 0
    return coco, weights, cache_folder(weights)


def int8_files(folder: Path) -> list[str]:
    return sorted(path.name.split('.', 1)[1] for path in folder.glob(f'*{INT8_SUFFIX}'))


def test_quantize_writes_both_networks_beside_the_float_files(quantized) -> None:
    _, _, folder = quantized
    assert int8_files(folder) == ['global.int8.onnx', 'local.int8.onnx']
    keys = {path.name.split('.', 1)[0] for path in folder.glob('*.onnx')}
    assert len(keys) == 1  # the int8 files carry the float export's key
    assert not [path for path in folder.iterdir() if path.name.startswith('.')]  # no temporary file left


def test_int8_networks_track_float32_and_auto_uses_them(quantized) -> None:
    """On images the calibration did not see, each int8 network's heatmaps follow the float32 ones (the 2-epoch
    tiny model's heatmaps are nearly flat, so its argmax landmarks are no test of this; the real models' MRE is
    benchmarks.int8_accuracy's); ``auto`` predicts with the int8 files, ``onnxruntime`` with the float ones."""
    import torch

    coco, weights, _ = quantized
    paths = [image.path for image in read_labelled_images(coco / 'valid.json')]
    float_predictor = LandmarkPredictor(TINY_CASCADE, weights, device='cpu', engine='onnxruntime')
    assert float_predictor.engine == 'onnxruntime'
    batches = quantize.record_network_inputs(float_predictor, paths, progress=False)
    int8 = LandmarkPredictor(TINY_CASCADE, weights, device='cpu', engine='onnxruntime-int8')
    auto = LandmarkPredictor(TINY_CASCADE, weights, device='cpu', engine='auto')
    assert int8.engine == auto.engine == 'onnxruntime-int8'
    for name in ('global', 'local'):
        reference = getattr(float_predictor.model.engine, f'{name}_network')
        quantized_network = getattr(int8.model.engine, f'{name}_network')
        for batch in batches[name]:
            ours, theirs = (network(torch.from_numpy(batch)).numpy() for network in (quantized_network, reference))
            assert ours.shape == theirs.shape and not np.array_equal(ours, theirs)
            assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.95, name
    images = [read_radiograph(path).image for path in paths]
    assert np.array_equal(auto.predict_images(images), int8.predict_images(images))


def test_int8_engine_without_int8_files_is_a_one_line_error(trained_cascade, tmp_path, capsys) -> None:
    coco, checkpoint = trained_cascade
    weights = Path(shutil.copy(checkpoint, tmp_path / 'model.pth'))
    stack_free_args = ['--config_file', TINY_CASCADE, '--load_weight_path', weights, '--images',
                       next((coco / 'images').iterdir()), '--output-dir', tmp_path / 'out', '--device', 'cpu',
                       '--engine', 'onnxruntime-int8', '--spacing', '0.1']
    code, _, err = run_step5(stack_free_args, capsys)
    assert code != 0
    assert_one_line_error(err, 'has no int8 networks for --engine onnxruntime-int8')
    assert 'python -m cldetection.quantize' in err
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())


def test_quantize_keeps_existing_files_without_overwrite(quantized, capsys) -> None:
    coco, weights, folder = quantized
    before = {path: path.stat().st_mtime_ns for path in folder.glob(f'*{INT8_SUFFIX}')}
    args = ['--config_file', str(TINY_CASCADE), '--load_weight_path', str(weights), '--images', str(coco / 'images'),
            '--num-images', '1']
    with pytest.raises(SystemExit) as exit_info:
        run_cli(quantize.main, args)
    assert exit_info.value.code != 0
    assert_one_line_error(capsys.readouterr().err, 'already exists')
    assert {path: path.stat().st_mtime_ns for path in folder.glob(f'*{INT8_SUFFIX}')} == before


def test_quantize_without_images_is_a_one_line_error(trained_cascade, tmp_path, capsys) -> None:
    _, checkpoint = trained_cascade
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(quantize.main, ['--config_file', str(TINY_CASCADE), '--load_weight_path', str(checkpoint),
                                '--images', str(empty)])
    assert exit_info.value.code != 0
    assert_one_line_error(capsys.readouterr().err, 'no images in this folder')


def test_new_weights_make_the_old_int8_files_stale(quantized, tmp_path) -> None:
    """Other weights under the same name export under another key, and the int8 files of the old key go with the
    old float files: never int8 networks of other weights."""
    import torch

    coco, weights, _ = quantized
    moved = tmp_path / 'model.pth'
    shutil.copytree(cache_folder(weights), cache_folder(moved))
    checkpoint = torch.load(weights, map_location='cpu', weights_only=False)
    state = checkpoint['state_dict']
    name = next(key for key in state if key.startswith('local.') and key.endswith('.weight'))
    state[name] = state[name] * 1.01
    torch.save(checkpoint, moved)
    predictor = LandmarkPredictor(TINY_CASCADE, moved, device='cpu', engine='auto')
    assert predictor.engine == 'onnxruntime'  # the new weights have no int8 files
    assert int8_files(cache_folder(moved)) == []
    assert len(list(cache_folder(moved).glob('*.onnx'))) == 2


def test_the_model_tarball_carries_the_int8_networks_to_a_read_only_model_folder(quantized, tmp_path,
                                                                                  monkeypatch) -> None:
    """Step 6's tarball packs the int8 files of the weights; unpacked into a model folder the container cannot write
    (its float export goes to the temporary folder), ``auto`` still finds and runs them."""
    import tarfile

    from cldetection import grand_challenge, inference_engine

    _, weights, _ = quantized
    tarball = tmp_path / 'model.tar.gz'
    assert grand_challenge.main(['tarball', '--config', str(TINY_CASCADE), '--weights', str(weights),
                                 '--out', str(tarball)]) == 0
    with tarfile.open(tarball) as tar:
        names = sorted(tar.getnames())
        tar.extractall(tmp_path / 'model', filter='data')
    assert names[:2] == ['config.py', 'weights.pth'] and len(names) == 4
    assert [Path(name).name.split('.', 1)[1] for name in names[2:]] == ['global.int8.onnx', 'local.int8.onnx']
    assert all(name.startswith('weights.pth.onnx/') for name in names[2:])
    monkeypatch.setattr(inference_engine, '_writable', lambda folder: False)  # root writes anywhere: pretend
    (tmp_path / 'tmp').mkdir()
    monkeypatch.setattr(inference_engine.tempfile, 'tempdir', str(tmp_path / 'tmp'))
    predictor = LandmarkPredictor(tmp_path / 'model' / 'config.py', tmp_path / 'model' / 'weights.pth',
                                  device='cpu', engine='auto')
    assert predictor.engine == 'onnxruntime-int8'
    assert all(path.parent == tmp_path / 'model' / 'weights.pth.onnx'
               for path in predictor.model.engine.files.values())
