"""``EpochSeedHook``: reseed every random generator at the start of each training epoch from (seed, epoch).

Why: MMEngine restores the model, optimiser, schedulers and epoch when it resumes, but not the state of the
random generators that augmentation draws from. Its dataloader workers are seeded from the run's seed alone, so
with ``persistent_workers=False`` every epoch replays the same augmentation draws, and with
``persistent_workers=True`` a resumed run draws differently from an uninterrupted one. Seeding from
``(seed, epoch, rank, worker)`` instead gives every epoch fresh draws *and* makes a run killed and resumed at an
epoch boundary continue exactly as if it had never stopped.

Requires ``persistent_workers=False`` in the train dataloader (workers are re-created, and so re-seeded, each
epoch); with persistent workers the hook still seeds the first epoch and warns once.
"""
from __future__ import annotations

import random
from functools import partial
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpose.registry import HOOKS

#: Distinguishes the main process's stream from the workers' (worker ids are >= 0).
_MAIN_PROCESS = -1


def epoch_seed(seed: int, epoch: int, rank: int, worker_id: int) -> int:
    """A 32-bit seed from ``(seed, epoch, rank, worker_id)``; different tuples give independent streams."""
    return int(np.random.SeedSequence([seed, epoch, rank, worker_id + 1]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_worker(worker_id: int, seed: int, epoch: int, rank: int) -> None:
    """``worker_init_fn`` for one epoch's dataloader workers."""
    seed_everything(epoch_seed(seed, epoch, rank, worker_id))


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Reseed the main process and the train dataloader's workers from ``(seed, epoch, rank)`` each epoch."""

    priority = 'VERY_HIGH'  # before anything that might draw random numbers at the start of an epoch

    def __init__(self) -> None:
        self._warned: bool = False

    def before_train_epoch(self, runner) -> None:
        seed: Optional[int] = runner.seed
        if seed is None:
            return
        epoch, rank = runner.epoch, get_rank()
        seed_everything(epoch_seed(seed, epoch, rank, _MAIN_PROCESS))
        loader = runner.train_dataloader
        if getattr(loader, 'num_workers', 0) > 0:
            if loader.persistent_workers and epoch > 0 and not self._warned:
                print_log('EpochSeedHook: persistent_workers=True keeps the workers of epoch 0, so resumed runs '
                          'are not reproducible; set train_dataloader.persistent_workers=False',
                          logger='current', level=30)
                self._warned = True
            loader.worker_init_fn = partial(seed_worker, seed=seed, epoch=epoch, rank=rank)
