"""Shared test fixtures. Real data lives at ../shared/data (never copied here); tests that need it skip
cleanly when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import cldetection  # noqa: F401  (applies compat + registers modules before any mmpose import)

REPO_ROOT = Path(__file__).resolve().parents[1]
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
