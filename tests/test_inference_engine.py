"""The cascade through ONNX Runtime (cldetection.inference_engine): the same landmarks and heatmaps as PyTorch, the
ONNX cache beside the checkpoint, the engine switch of step 5 and process.py, and its one-line errors."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CASCADE, make_challenge_stack
from test_predict import assert_one_line_error, run_step5, step5_args, test_model  # noqa: F401  (fixture)

from cldetection import inference_engine
from cldetection.inference_engine import cache_folder, engine_installed
from cldetection.checkpoints import save_untrained_checkpoint
from cldetection.predict import LandmarkPredictor

pytestmark = pytest.mark.skipif(not engine_installed('onnxruntime'),
                                reason='onnxruntime / onnx not installed (make install: requirements.lock)')
GOLDEN_STEP5 = Path(__file__).resolve().parent / 'data' / 'step5_untrained_tiny_cascade.json'


@pytest.fixture(scope='module')
def fixed_cascade(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny cascade's initial weights (seed 0) and the 2-slice stack of test_cascade's golden step 5 JSON."""
    folder = tmp_path_factory.mktemp('engine')
    stack, _ = make_challenge_stack(folder / 'challenge', num_slices=2, seed=3)
    return save_untrained_checkpoint(TINY_CASCADE, folder / 'untrained.pth', seed=0), stack


def points_of(path: Path) -> np.ndarray:
    return np.array([p['point'] for p in json.loads(path.read_text())['points']])


def test_step5_engine_writes_the_landmarks_pytorch_writes(fixed_cascade, tmp_path, capsys) -> None:
    checkpoint, stack = fixed_cascade
    written = {}
    for engine in ('pytorch', 'onnxruntime'):
        written[engine] = tmp_path / f'{engine}.json'
        code, out, err = run_step5(step5_args((TINY_CASCADE, checkpoint), stack, written[engine], '--engine', engine),
                                   capsys)
        assert code == 0, err
        assert f'engine {engine})' in err  # the load line names what ran
    engine, reference = points_of(written['onnxruntime']), points_of(written['pytorch'])
    assert engine.shape == (2 * 38, 3) and np.array_equal(engine[:, 2], reference[:, 2])
    np.testing.assert_allclose(engine[:, :2], reference[:, :2], atol=0.05)  # pixels
    for points in (engine, reference):  # and both the JSON of earlier versions (test_cascade's golden file)
        np.testing.assert_allclose(points, points_of(GOLDEN_STEP5), atol=0.05)


def test_engine_heatmaps_match_pytorch(fixed_cascade) -> None:
    checkpoint, _ = fixed_cascade
    predictor = LandmarkPredictor(TINY_CASCADE, checkpoint, device='cpu', engine='onnxruntime')
    model, engine = predictor.model, predictor.model.engine
    assert predictor.engine == 'onnxruntime' and engine is not None
    assert not any(module.training for module in model.modules())  # the export left the model in eval mode
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 160, 128, generator=generator) * 1.5  # the global input (N x 3 x h x w), normalised
    patches = torch.randn(38, 3, 64, 64, generator=generator) * 1.5
    with torch.no_grad():
        by_engine = model.global_heatmaps(images), model.local(patches)
        model.set_engine(None)
        by_pytorch = model.global_heatmaps(images), model.local(patches)
    model.set_engine(engine)
    for ours, theirs in zip(by_engine, by_pytorch):
        assert ours.shape == theirs.shape and ours.dtype == torch.float32
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-4 * float(theirs.abs().max()))
    assert model.local(patches[:5]).shape[0] == 5  # the local network takes any number of patches


def test_onnx_files_are_reused_and_refreshed_with_the_checkpoint(tmp_path, monkeypatch) -> None:
    checkpoint = save_untrained_checkpoint(TINY_CASCADE, tmp_path / 'model.pth', seed=0)
    LandmarkPredictor(TINY_CASCADE, checkpoint, device='cpu', engine='onnxruntime')
    folder = cache_folder(checkpoint)
    first = sorted(folder.glob('*.onnx'))
    assert [p.name.split('.', 1)[1] for p in first] == ['global.onnx', 'local.onnx'] and folder.parent == tmp_path
    stamps = [p.stat().st_mtime_ns for p in first]

    def no_export(*args):
        raise AssertionError('exported again although the cache holds this model')

    monkeypatch.setattr(inference_engine, '_export', no_export)
    LandmarkPredictor(TINY_CASCADE, checkpoint, device='cpu', engine='onnxruntime')
    assert sorted(folder.glob('*.onnx')) == first and [p.stat().st_mtime_ns for p in first] == stamps
    monkeypatch.undo()
    save_untrained_checkpoint(TINY_CASCADE, checkpoint, seed=1)  # other weights under the same name
    LandmarkPredictor(TINY_CASCADE, checkpoint, device='cpu', engine='onnxruntime')
    second = sorted(folder.glob('*.onnx'))
    assert len(second) == 2 and not set(second) & set(first)  # new files; the stale ones removed
    assert not [p for p in folder.iterdir() if p.suffix != '.onnx']  # no temporary file left behind


def test_read_only_model_folder_caches_in_the_temporary_folder(fixed_cascade, tmp_path, monkeypatch) -> None:
    checkpoint, _ = fixed_cascade
    monkeypatch.setattr(inference_engine, '_writable', lambda folder: False)  # root writes anywhere: pretend
    monkeypatch.setattr(inference_engine.tempfile, 'tempdir', str(tmp_path))
    predictor = LandmarkPredictor(TINY_CASCADE, checkpoint, device='cpu', engine='onnxruntime')
    assert all(path.parent == tmp_path / 'cldetection-onnx' / cache_folder(checkpoint).name
               for path in predictor.model.engine.files.values())


def test_auto_picks_the_engine_for_a_cascade_on_a_cpu_and_pytorch_writes_nothing(tmp_path) -> None:
    checkpoint = save_untrained_checkpoint(TINY_CASCADE, tmp_path / 'model.pth', seed=0)
    plain = LandmarkPredictor(TINY_CASCADE, checkpoint, device='cpu')  # the library's default: pytorch
    assert plain.engine == 'pytorch' and plain.model.engine is None and plain.model.local.engine is None
    assert not cache_folder(checkpoint).exists()
    unfolded = LandmarkPredictor(TINY_CASCADE, checkpoint, device='cpu', engine='auto', fold_batch_norms=False)
    assert unfolded.engine == 'pytorch'  # the engine runs folded networks only
    bf16 = tmp_path / 'bf16.py'
    bf16.write_text(f'_base_ = {str(TINY_CASCADE)!r}\nmodel = dict(precision="bf16")\n')
    assert LandmarkPredictor(bf16, checkpoint, device='cpu', engine='auto').engine == 'pytorch'  # as configured
    auto = LandmarkPredictor(TINY_CASCADE, checkpoint, device='cpu', engine='auto')
    assert auto.engine == 'onnxruntime' and auto.model.local.engine is auto.model.engine.local_network


def test_engine_with_flip_test_predicts_what_mmpose_predicts(fixed_cascade, tmp_path) -> None:
    """The cascade's own global prediction (the network behind global_heatmaps) is MMPose's TopdownPoseEstimator
    prediction, flip test and output heatmaps included, and the engine gives it too."""
    from mmengine.dataset import pseudo_collate
    from mmpose.models.pose_estimators import TopdownPoseEstimator

    checkpoint, _ = fixed_cascade
    config = tmp_path / 'flip.py'
    config.write_text(f'_base_ = {str(TINY_CASCADE)!r}\n'
                      'model = dict(test_cfg=dict(flip_test=True, flip_mode="heatmap", output_heatmaps=True))\n')
    predictor = LandmarkPredictor(config, checkpoint, device='cpu', engine='onnxruntime')
    model, engine = predictor.model, predictor.model.engine
    image = np.random.default_rng(0).integers(0, 256, (190, 160, 3), dtype=np.uint8)
    batch = model.data_preprocessor(pseudo_collate([predictor.prepare(image)]), False)
    with torch.no_grad():
        by_engine = model.predict_global(batch['inputs'], copy.deepcopy(batch['data_samples']))[0]
        model.set_engine(None)
        ours = model.predict_global(batch['inputs'], copy.deepcopy(batch['data_samples']))[0]
        mmpose = TopdownPoseEstimator.predict(model, batch['inputs'], copy.deepcopy(batch['data_samples']))[0]
    model.set_engine(engine)
    np.testing.assert_array_equal(ours.pred_instances.keypoints, mmpose.pred_instances.keypoints)
    torch.testing.assert_close(ours.pred_fields.heatmaps, mmpose.pred_fields.heatmaps)
    np.testing.assert_allclose(by_engine.pred_instances.keypoints, mmpose.pred_instances.keypoints, atol=0.05)


def test_unknown_engine_is_a_one_line_error(fixed_cascade, tmp_path, capsys) -> None:
    checkpoint, stack = fixed_cascade
    code, _, err = run_step5(step5_args((TINY_CASCADE, checkpoint), stack, tmp_path / 'p.json', '--engine', 'tensorrt'),
                             capsys)
    assert code == 2
    assert_one_line_error(err, "--engine must be one of auto, pytorch, onnxruntime, onnxruntime-int8, got 'tensorrt'")
    assert not (tmp_path / 'p.json').exists()


def test_process_py_refuses_an_unknown_engine_before_anything_else(tmp_path, capsys) -> None:
    from cldetection.errors import run_cli
    from cldetection.grand_challenge import process_main

    with pytest.raises(SystemExit) as exit_info:
        run_cli(process_main, ['--input-dir', str(tmp_path), '--output-dir', str(tmp_path / 'out'), '--config',
                               str(TINY_CASCADE), '--weights', str(tmp_path / 'none.pth'), '--engine', 'ONNX'])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "--engine must be one of auto, pytorch, onnxruntime, onnxruntime-int8, got 'ONNX'")


def test_an_engine_for_a_model_that_is_not_a_cascade_is_a_one_line_error(test_model, tmp_path, capsys) -> None:
    stack, _ = make_challenge_stack(tmp_path / 'challenge', num_slices=1)
    code, _, err = run_step5(step5_args(test_model, stack, tmp_path / 'p.json', '--engine', 'onnxruntime'), capsys)
    assert code == 2
    assert_one_line_error(err, '--engine onnxruntime runs cascades (CascadeLandmarkEstimator) only')
    assert LandmarkPredictor(*test_model, device='cpu', engine='auto').engine == 'pytorch'  # auto: PyTorch runs it
