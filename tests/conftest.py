"""Shared test fixtures. Real data lives at ../shared/data (never copied here); tests that need it skip
cleanly when it is absent."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

# Under pytest-xdist (`make test` runs one worker per core) each worker and the step scripts it starts get an
# equal share of the cores: without it every worker's torch would use them all and they would fight over them.
if os.environ.get('PYTEST_XDIST_WORKER_COUNT'):
    os.environ.setdefault('OMP_NUM_THREADS',
                          str(max(1, (os.cpu_count() or 1) // int(os.environ['PYTEST_XDIST_WORKER_COUNT']))))

import cldetection  # noqa: E402,F401  (applies compat + registers modules before any mmpose import)

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CASCADE = REPO_ROOT / 'cldetection_configs' / 'tiny_cascade_cpu.py'
SHARED_DATA = Path(os.environ.get('CLDETECTION_SHARED_DATA', REPO_ROOT.parent / 'shared' / 'data'))


@pytest.fixture(autouse=True)
def _mmengine_loggers_write_to_live_streams():
    """MMEngine's loggers keep the stdout/stderr of the test that created them; once pytest closes that
    capture, later log lines fail with 'Logging error'. Point their console handlers at today's streams."""
    import logging
    import sys

    from mmengine.logging import MMLogger

    for logger in list(MMLogger._instance_dict.values()) + [logging.getLogger('mmengine')]:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                # plain assignment: setStream() would flush the old, closed stream
                handler.stream = sys.stdout if getattr(handler.stream, 'name', '') == '<stdout>' else sys.stderr
    yield


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """``../shared/data`` (ISBI 2015 + CL-Detection 2023 subset), or skip when absent."""
    if not (SHARED_DATA / 'cl2023_subset' / 'train-gt.json').is_file():
        pytest.skip(f'real data not found at {SHARED_DATA}')
    return SHARED_DATA


def make_challenge_stack(folder: Path, num_slices: int = 4, num_landmarks: int = 38, shape=(240, 288),
                         content=(200, 160), spacing: float = 0.1, seed: int = 0) -> tuple[Path, Path]:
    """A small challenge-format stack + ground truth (random texture in the content area, padded with zeros).

    Slice ``z`` has content ``content[0] - z`` rows high so sizes differ; landmarks are random points inside.
    """
    import numpy as np

    from cldetection.challenge_io import ground_truth_document, write_json_atomic, write_stack

    rng = np.random.default_rng(seed)
    points, spacings, images = {}, {}, []
    for z in range(1, num_slices + 1):
        h, w = content[0] - z, content[1]
        images.append(rng.integers(1, 256, size=(h, w), dtype=np.uint8))
        points[z] = {k: (float(rng.integers(0, w)), float(rng.integers(0, h))) for k in range(1, num_landmarks + 1)}
        spacings[z] = spacing
    folder.mkdir(parents=True, exist_ok=True)
    stack = write_stack(iter(images), folder / 'train_stack.mha', num_slices, shape=shape)
    gt = write_json_atomic(ground_truth_document(points, spacings), folder / 'train-gt.json')
    return stack, gt


@pytest.fixture
def small_stack(tmp_path: Path) -> tuple[Path, Path]:
    return make_challenge_stack(tmp_path / 'challenge')


@pytest.fixture(scope='session')
def trained_cascade(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Step 3 (the real command line) trains the tiny cascade for 2 epochs on tiny synthetic data: the prepared
    dataset folder and the best checkpoint (one training for test_cascade.py and test_ensemble.py)."""
    from test_train import STEP3, _env, make_tiny_coco

    folder = tmp_path_factory.mktemp('cascade')
    coco = make_tiny_coco(folder)
    work_dir = folder / 'work'
    proc = subprocess.run([sys.executable, str(STEP3), str(TINY_CASCADE), '--work-dir', str(work_dir), '--seed', '0',
                           '--cfg-options', f'data_root={coco}', 'train_dataloader.batch_size=2',
                           'train_cfg.max_epochs=2', 'train_cfg.val_interval=2'],
                          cwd=folder, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = next(work_dir.glob('*/*.log')).read_text()
    assert 'loss_local' in log  # both stages train
    return coco, next(work_dir.glob('best_MRE_epoch_*.pth'))


# --------------------------------------------------------------------------- images with landmarks drawn in
def dots(shape: tuple[int, int], points: np.ndarray, blur: float = 2.0) -> np.ndarray:
    """A float image with a blurred bright dot on each point."""
    image = np.zeros(shape, np.float32)
    for x, y in np.round(points).astype(int):
        image[y, x] = 1000.0
    return cv2.GaussianBlur(image, (0, 0), blur)


def peak_near(image: np.ndarray, point: np.ndarray, radius: int = 6) -> np.ndarray:
    """Intensity centroid of ``image`` in a window around ``point`` (x, y)."""
    x0, y0 = np.round(point).astype(int)
    window = image[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1].astype(np.float64)
    ys, xs = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return np.array([x0 + (window * xs).sum() / window.sum(), y0 + (window * ys).sum() / window.sum()])
