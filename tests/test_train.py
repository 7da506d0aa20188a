"""Step 3: a short distributed (2 processes, gloo) training smoke test, and kill -9 + --resume reproducibility.

Training runs as subprocesses of the real command line, on tiny synthetic data (12 images of 256 x 208: 8 train, 2 valid, 2 test) with
the tiny CPU config, one thread per process (deterministic and light on a shared 2-core machine).
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import pytest
import torch

from cldetection.errors import EXIT_BAD_INPUT, run_cli

REPO_ROOT = Path(__file__).resolve().parents[1]
STEP3 = REPO_ROOT / 'step3_train_and_evaluation.py'
TINY_CONFIG = REPO_ROOT / 'cldetection_configs' / 'tiny_cpu.py'


def make_tiny_coco(out_dir: Path, num_images: int = 12) -> Path:
    """Synthetic challenge data -> step 2; returns the COCO folder (the stack is deleted: it is 20 MB a slice)."""
    from cldetection.prepare import prepare_coco_dataset
    from cldetection.synthetic import generate_synthetic_dataset

    stack, gt = generate_synthetic_dataset(out_dir / 'challenge', num_images=num_images, seed=3, image_size=(256, 208))
    coco = out_dir / 'coco'
    prepare_coco_dataset(stack, gt, coco, seed=0)
    stack.unlink()
    return coco


@pytest.fixture(scope='module')
def one_torch_thread() -> Iterator[None]:
    """For in-process tests: small CPU passes gain nothing from more threads, and on a shared CPU the threads
    wait on each other (use with ``pytestmark = pytest.mark.usefixtures('one_torch_thread')``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope='module')
def coco_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_coco(tmp_path_factory.mktemp('train_data'))


def _env() -> dict[str, str]:
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'PYTHONPATH': str(REPO_ROOT)}


def _step3_args(work_dir: Path, coco_dir: Path, *options: str) -> list[str]:
    return [str(STEP3), str(TINY_CONFIG), '--work-dir', str(work_dir), '--seed', '0', '--cfg-options',
            f'data_root={coco_dir}', 'train_dataloader.batch_size=2', *options]


def _last_val_metrics(work_dir: Path) -> dict[str, float]:
    """The last validation result MMEngine logged to ``<work_dir>/<timestamp>/vis_data/scalars.json``."""
    records = []
    for scalars in sorted(work_dir.glob('*/vis_data/scalars.json')):
        records += [json.loads(line) for line in scalars.read_text().splitlines() if line.strip()]
    val = [r for r in records if 'MRE' in r]
    assert val, f'no validation metrics logged in {work_dir}'
    return {k: v for k, v in val[-1].items() if k == 'MRE' or k.startswith('SDR') or k == 'MRE_SD'}


def _state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']


def test_two_process_gloo_training_smoke(coco_dir: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes over gloo: 1 epoch of 2 iterations per process, validation, checkpoint."""
    work_dir = tmp_path / 'dist'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           *_step3_args(work_dir, coco_dir, 'train_cfg.max_epochs=1', 'env_cfg.dist_cfg.backend=gloo'),
           '--launcher', 'pytorch']
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = next(work_dir.glob('*/*.log')).read_text()
    assert 'Distributed training: True' in log and 'GPU number: 2' in log  # MMEngine's name for world size
    assert 'Epoch(train) [1][2/2]' in log  # 8 training images / 2 processes / batch 2 = 2 iterations each
    assert (work_dir / 'epoch_1.pth').is_file()
    metrics = _last_val_metrics(work_dir)
    assert set(metrics) == {'MRE', 'MRE_SD', 'SDR 2.0mm', 'SDR 2.5mm', 'SDR 3.0mm', 'SDR 4.0mm'}
    assert metrics['MRE'] > 0


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(coco_dir: Path, tmp_path: Path) -> None:
    options = ('train_cfg.max_epochs=3', 'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=1')
    whole, killed = tmp_path / 'whole', tmp_path / 'killed'
    run_whole = subprocess.Popen([sys.executable, *_step3_args(whole, coco_dir, *options)], cwd=tmp_path,
                                 env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_killed = subprocess.Popen([sys.executable, *_step3_args(killed, coco_dir, *options)], cwd=tmp_path,
                                  env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (killed / 'last_checkpoint').is_file():  # written once epoch_1.pth is complete
            assert run_killed.poll() is None, 'training ended before its first checkpoint'
            assert time.monotonic() < deadline, 'no checkpoint within 4 minutes'
            time.sleep(0.05)
        run_killed.send_signal(signal.SIGKILL)
        run_killed.wait(timeout=30)
        assert run_killed.returncode == -signal.SIGKILL
        assert not (killed / 'epoch_3.pth').exists(), 'the run finished before it was killed'
        assert run_whole.wait(timeout=240) == 0
    finally:
        for proc in (run_whole, run_killed):
            if proc.poll() is None:
                proc.kill()

    resumed = subprocess.run([sys.executable, *_step3_args(killed, coco_dir, *options), '--resume'],
                             cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch' in (resumed.stdout + resumed.stderr).lower()

    assert _last_val_metrics(killed) == _last_val_metrics(whole)
    final_whole, final_resumed = _state_dict(whole / 'epoch_3.pth'), _state_dict(killed / 'epoch_3.pth')
    assert final_whole.keys() == final_resumed.keys()
    assert all(torch.equal(final_whole[k], final_resumed[k]) for k in final_whole)


def test_no_validate_trains_on_every_image_without_a_valid_split(tmp_path: Path, capsys) -> None:
    """Step 2 with ``--ratios 1 0 0`` leaves valid.json empty: step 3 names it and the switch, and with
    ``--no-validate`` trains, keeps the last checkpoint and no best one."""
    from cldetection.prepare import prepare_coco_dataset
    from cldetection.synthetic import generate_synthetic_dataset

    stack, gt = generate_synthetic_dataset(tmp_path / 'challenge', num_images=6, seed=3, image_size=(256, 208))
    coco = tmp_path / 'coco'
    prepare_coco_dataset(stack, gt, coco, ratios=(1.0, 0.0, 0.0), seed=0)
    assert json.loads((coco / 'valid.json').read_text())['images'] == []
    step3 = load_script(STEP3).main
    work_dir = tmp_path / 'work'
    args = _step3_args(work_dir, coco, 'train_cfg.max_epochs=1')[1:]
    assert_one_line_error(step3, args, 'holds no images to validate on; pass --no-validate', capsys)
    done = subprocess.run([sys.executable, *_step3_args(work_dir, coco, 'train_cfg.max_epochs=1'), '--no-validate'],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    last = Path((work_dir / 'last_checkpoint').read_text().strip())
    assert last.name == 'epoch_1.pth' and last.is_file()
    assert not list(work_dir.glob('best_*.pth'))
    assert _state_dict(last)  # a loadable model


def load_script(path: Path) -> ModuleType:
    """Import a step script (they live outside the package) to call its ``main`` in-process."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_one_line_error(main: Callable, args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    """``run_cli`` turns the problem into ``error: ...`` on one line and exit status 2, without a traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, args)
    err = capsys.readouterr().err
    assert exit_info.value.code == EXIT_BAD_INPUT, err
    assert err.strip().splitlines()[-1].startswith('error: ') and message in err and 'Traceback' not in err


def test_bad_input_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    work_dir = ['--work-dir', str(tmp_path / 'w')]
    step3 = load_script(STEP3).main
    assert_one_line_error(step3, [str(tmp_path / 'missing.py')], 'config file not found', capsys)
    assert_one_line_error(step3, [str(TINY_CONFIG), '--cfg-options', f'data_root={tmp_path}', *work_dir],
                          'annotation file of train_dataloader not found', capsys)
    assert_one_line_error(step3, [str(TINY_CONFIG), '--resume', str(tmp_path / 'nope.pth'), *work_dir],
                          'checkpoint to resume from not found', capsys)
    if not torch.cuda.is_available():
        assert_one_line_error(step3, [str(TINY_CONFIG), '--amp', *work_dir], '--amp needs a CUDA GPU', capsys)


def test_step3_trains_on_step2_extra_training_stacks(tmp_path: Path) -> None:
    """Self-training's last leg: step 2 --extra_train puts another stack's slices (``images/extra1/``) in the
    training split only, and step 3 trains on all of them: 4 + 4 images in batches of 2 are 4 iterations."""
    from cldetection.prepare import prepare_coco_dataset
    from cldetection.synthetic import generate_synthetic_dataset

    stack, gt = generate_synthetic_dataset(tmp_path / 'labelled', num_images=6, seed=3, image_size=(256, 208))
    extra_stack, extra_gt = generate_synthetic_dataset(tmp_path / 'extra', num_images=4, seed=4,
                                                       image_size=(256, 208))
    coco = tmp_path / 'coco'
    result = prepare_coco_dataset(stack, gt, coco, seed=0, extra_train=[(extra_stack, extra_gt)], progress=False)
    assert [len(result.splits[s]) for s in ('train', 'valid', 'test')] == [4, 1, 1]
    assert result.extra_train_images == [4]
    work_dir = tmp_path / 'work'
    done = subprocess.run([sys.executable, *_step3_args(work_dir, coco, 'train_cfg.max_epochs=1',
                                                        'default_hooks.logger.interval=1')],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = ''.join(p.read_text() for p in work_dir.glob('*/*.log'))
    assert 'Epoch(train) [1][4/4]' in logs and 'Epoch(train) [1][5/' not in logs
    assert 'Epoch(val) [1][1/1]' in logs  # valid stays the main stack's one image
