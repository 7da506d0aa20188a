"""``TrainThroughputHook``: training images per second, measured inside step 3's runner.

The benchmark adds it to the config it derives (``custom_imports`` gets ``benchmarks.hooks``). It counts the
images of every training iteration and the wall time of the training epochs only -- from the start of an
epoch to the end of its last iteration, before checkpointing; validation runs between epochs and is not
counted -- and writes ``<work_dir>/train_throughput.json`` after each epoch.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import cldetection  # noqa: F401  (compat fixes + registrations before MMPose is used)
from cldetection.challenge_io import write_json_atomic
from mmengine.hooks import Hook
from mmpose.registry import HOOKS

THROUGHPUT_FILE = 'train_throughput.json'


@HOOKS.register_module()
class TrainThroughputHook(Hook):
    """Write ``{images, seconds, epochs, images_per_s}`` of the training epochs to ``work_dir``."""

    priority = 'VERY_HIGH'  # stop the clock before other hooks' end-of-epoch work (checkpoint saving)

    def __init__(self, out_file: str = THROUGHPUT_FILE) -> None:
        self.out_file = out_file
        self.images = 0
        self.seconds = 0.0
        self.epochs = 0
        self._epoch_start: Optional[float] = None

    def before_train_epoch(self, runner: Any) -> None:
        self._epoch_start = time.perf_counter()

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if isinstance(data_batch, dict) and 'inputs' in data_batch:
            self.images += len(data_batch['inputs'])

    def after_train_epoch(self, runner: Any) -> None:
        if self._epoch_start is None:
            return
        self.seconds += time.perf_counter() - self._epoch_start
        self.epochs += 1
        self._epoch_start = None
        write_json_atomic({'images': self.images, 'seconds': self.seconds, 'epochs': self.epochs,
                           'images_per_s': self.images / self.seconds if self.seconds > 0 else None},
                          Path(runner.work_dir) / self.out_file)
