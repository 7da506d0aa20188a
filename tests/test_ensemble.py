"""The mean of several trained models as one model (cldetection.ensemble): built from checkpoints, used by step 4,
step 5 and the container like any model, and its error paths."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, TINY_CASCADE
from test_train import _env, one_torch_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _perturbed_copy(checkpoint: Path, out: Path, seed: int = 1, scale: float = 0.05) -> Path:
    """The checkpoint with noise on every floating-point weight: a second model of the same architecture whose
    predictions differ (as a second seed's would)."""
    from mmengine.runner.checkpoint import save_checkpoint

    saved = torch.load(checkpoint, map_location='cpu', weights_only=False)
    generator = torch.Generator().manual_seed(seed)
    state = {key: value + scale * value.std().nan_to_num() * torch.randn(value.shape, generator=generator)
             if value.is_floating_point() and value.numel() > 1 and 'running_var' not in key else value
             for key, value in saved['state_dict'].items()}
    save_checkpoint({'meta': saved['meta'], 'state_dict': state}, str(out))
    return out


@pytest.fixture(scope='module')
def two_models(trained_cascade, tmp_path_factory) -> tuple[Path, Path, Path]:
    coco, checkpoint = trained_cascade
    second = _perturbed_copy(checkpoint, tmp_path_factory.mktemp('second') / 'second.pth')
    return coco, checkpoint, second


def _test_image(coco: Path) -> np.ndarray:
    path = sorted((coco / 'images').glob('*.png'))[-1]
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]


def test_ensemble_predicts_the_mean_of_its_members(two_models, tmp_path) -> None:
    from cldetection.ensemble import combine_checkpoints
    from cldetection.predict import LandmarkPredictor

    coco, first, second = two_models
    config, weights = combine_checkpoints(TINY_CASCADE, [first, second], tmp_path / 'ensemble')
    assert (config, weights) == (tmp_path / 'ensemble' / 'config.py', tmp_path / 'ensemble' / 'ensemble.pth')
    image = _test_image(coco)
    alone = [LandmarkPredictor(TINY_CASCADE, path, device='cpu').predict_images([image])[0] for path in (first, second)]
    assert np.abs(alone[0] - alone[1]).max() > 0.5  # two different models: the test can tell a mean from either
    ensemble = LandmarkPredictor(config, weights, device='cpu')
    np.testing.assert_allclose(ensemble.predict_images([image])[0], np.mean(alone, axis=0), atol=1e-3)
    assert ensemble.num_landmarks == 38
    meta = torch.load(weights, map_location='cpu', weights_only=True)['meta']
    assert meta['ensemble_of'] == [str(first), str(second)] and 'dataset_meta' in meta


def test_step4_scores_the_ensemble_as_the_ensemble_diagnostic_does(two_models, tmp_path) -> None:
    """Step 4's metrics of the packed ensemble equal benchmarks.studies.ensemble_eval's mean of the two models."""
    from benchmarks.studies.ensemble_eval import run_ensemble
    from cldetection.ensemble import combine_checkpoints
    from cldetection.evaluate import evaluate

    coco, first, second = two_models
    config, weights = combine_checkpoints(TINY_CASCADE, [first, second], tmp_path / 'ensemble')
    packed = evaluate(config, weights, split='test', cfg_options={'data_root': str(coco)},
                      out_dir=tmp_path / 'step4').metrics
    *members, mean = run_ensemble([(TINY_CASCADE, first), (TINY_CASCADE, second)], str(coco), 'test',
                                  tmp_path / 'diagnostic')
    assert members[0]['MRE'] != pytest.approx(members[1]['MRE'])
    assert packed['MRE'] == pytest.approx(mean['MRE'], abs=1e-3)
    assert packed['SDR 2.0mm'] == pytest.approx(mean['SDR 2.0mm'])


def test_the_container_stages_and_runs_the_ensemble(two_models, tmp_path) -> None:
    """Step 6 stages the pair as config.py + weights.pth; the staged copy predicts what the ensemble predicts."""
    from cldetection.ensemble import combine_checkpoints
    from cldetection.grand_challenge import stage_model
    from cldetection.predict import LandmarkPredictor

    coco, first, second = two_models
    config, weights = combine_checkpoints(TINY_CASCADE, [first, second], tmp_path / 'ensemble')
    staged_config, staged_weights = stage_model(config, weights, tmp_path / 'staged')
    image = _test_image(coco)
    np.testing.assert_allclose(LandmarkPredictor(staged_config, staged_weights, device='cpu').predict_images([image]),
                               LandmarkPredictor(config, weights, device='cpu').predict_images([image]), atol=1e-5)


def test_an_ensemble_does_not_train() -> None:
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config
    from cldetection.ensemble import ensemble_model_cfg

    init_default_scope('mmpose')
    model = MODELS.build(ensemble_model_cfg(load_config(TINY_CASCADE).model, 2))
    with pytest.raises(RuntimeError, match='only predicts'):
        model(torch.zeros(1, 3, 64, 64), [], mode='loss')
    with pytest.raises(ValueError, match='at least 2 members'):
        MODELS.build(ensemble_model_cfg(load_config(TINY_CASCADE).model, 1))


def test_step3_refuses_to_train_an_ensemble_in_one_line(two_models, tmp_path, capsys) -> None:
    from test_train import STEP3, assert_one_line_error, load_script

    from cldetection.ensemble import combine_checkpoints

    _, first, second = two_models
    config, _ = combine_checkpoints(TINY_CASCADE, [first, second], tmp_path / 'ensemble')
    assert_one_line_error(load_script(STEP3).main, [str(config), '--work-dir', str(tmp_path / 'work')],
                          'is an ensemble of trained models', capsys)
    assert not (tmp_path / 'work').exists()


def _run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'cldetection.ensemble', *map(str, args)], cwd=REPO_ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)


def test_command_line_writes_the_pair_and_never_replaces_it_without_overwrite(two_models, tmp_path) -> None:
    _, first, second = two_models
    out = tmp_path / 'ensemble'
    proc = _run_cli('--config', TINY_CASCADE, '--checkpoints', first, second, '--out-dir', out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'the mean of 2 models' in proc.stdout
    written = (out / 'ensemble.pth').stat().st_mtime_ns
    proc = _run_cli('--config', TINY_CASCADE, '--checkpoints', first, second, '--out-dir', out)
    assert proc.returncode == 2 and 'already exists; pass --overwrite' in proc.stderr
    assert (out / 'ensemble.pth').stat().st_mtime_ns == written
    proc = _run_cli('--config', TINY_CASCADE, '--checkpoints', second, first, '--out-dir', out, '--overwrite')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / 'ensemble.pth').stat().st_mtime_ns != written


@pytest.mark.parametrize('case, message', [
    ('one_checkpoint', 'needs at least two checkpoints'),
    ('same_checkpoint_twice', 'is given twice'),
    ('missing_checkpoint', 'weights file not found'),
    ('weights_of_another_model', 'weights do not fit the model of tiny_cascade_cpu.py'),
    ('ensemble_as_member_config', 'is already an ensemble'),
])
def test_bad_input_is_one_line_error_and_writes_nothing(case, message, two_models, tmp_path) -> None:
    from cldetection.ensemble import combine_checkpoints

    _, first, second = two_models
    config, checkpoints = TINY_CASCADE, [first, second]
    if case == 'one_checkpoint':
        checkpoints = [first]
    elif case == 'same_checkpoint_twice':
        checkpoints = [first, first]
    elif case == 'missing_checkpoint':
        checkpoints = [first, tmp_path / 'nope.pth']
    elif case == 'weights_of_another_model':
        saved = torch.load(second, map_location='cpu', weights_only=False)
        state = {k: v for k, v in saved['state_dict'].items() if not k.startswith('local.backbone')}
        assert len(state) < len(saved['state_dict'])
        other = tmp_path / 'global_stage_only.pth'
        torch.save({'meta': {}, 'state_dict': state}, other)
        checkpoints = [first, other]
    elif case == 'ensemble_as_member_config':
        config = combine_checkpoints(TINY_CASCADE, [first, second], tmp_path / 'ensemble')[0]
    out = tmp_path / 'out'
    proc = _run_cli('--config', config, '--checkpoints', *checkpoints, '--out-dir', out)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and message in errors[0] and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert not out.exists() or not any(out.iterdir())
