"""Training speed of a config: seconds per iteration, wall clock and process CPU time, data loading separate.

    python -m benchmarks.train_speed cldetection_configs/hrnet-w32_udp_512x512.py --data-root DIR \\
        --batch-size 2 --iters 5

Builds the model, optimiser and train dataloader exactly as step 3's runner does (no pretrained weights), then
times ``model.train_step`` (data preprocessing, forward, loss, backward, optimiser step) on real batches after
``--warmup`` untimed iterations. Data loading runs in the main process (``num_workers=0``) and is timed apart.
CPU time counts every thread of the process, so on a shared machine it is steadier than wall time.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import cldetection  # noqa: F401  (compat fixes + registrations before MMPose is used)
from cldetection.errors import run_cli


def measure(config: str | Path, data_root: str | Path, batch_size: int = 2, iters: int = 5, warmup: int = 1,
            threads: Optional[int] = None) -> dict:
    """Per-iteration timings (lists and medians) of training ``config`` on ``data_root``."""
    import torch
    from mmengine.runner import Runner

    from cldetection.train import build_train_config

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as work_dir:
        cfg = build_train_config(config, work_dir=work_dir, no_pretrained=True, seed=0,
                                 cfg_options={'data_root': str(data_root)})
        cfg.train_dataloader.batch_size = batch_size
        cfg.train_dataloader.num_workers = 0
        cfg.train_dataloader.persistent_workers = False
        cfg.log_level = 'WARNING'
        runner = Runner.from_cfg(cfg)
        model = runner.model
        model.train()
        optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
        loader = runner.build_dataloader(cfg.train_dataloader, seed=0)
        batches = iter(loader)
        data_wall, data_cpu, step_wall, step_cpu = [], [], [], []
        for i in range(warmup + iters):
            t, c = time.perf_counter(), time.process_time()
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            t2, c2 = time.perf_counter(), time.process_time()
            model.train_step(batch, optim_wrapper)
            t3, c3 = time.perf_counter(), time.process_time()
            if i >= warmup:
                data_wall.append(t2 - t)
                data_cpu.append(c2 - c)
                step_wall.append(t3 - t2)
                step_cpu.append(c3 - c2)
    return {
        'config': str(config), 'batch_size': batch_size, 'iters': iters, 'warmup': warmup,
        'torch_threads': torch.get_num_threads(), 'device': 'cpu', 'machine': platform.processor() or
        platform.machine(), 'python': platform.python_version(), 'torch': torch.__version__,
        'median_step_cpu_s': statistics.median(step_cpu), 'median_step_wall_s': statistics.median(step_wall),
        'median_data_cpu_s': statistics.median(data_cpu), 'median_data_wall_s': statistics.median(data_wall),
        'step_cpu_s': step_cpu, 'step_wall_s': step_wall, 'data_cpu_s': data_cpu, 'data_wall_s': data_wall,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.train_speed', description=__doc__.split('\n')[0])
    parser.add_argument('config', help='MMEngine config, e.g. cldetection_configs/hrnet-w32_udp_512x512.py')
    parser.add_argument('--data-root', required=True, help='step 2 output folder (train.json, images/)')
    parser.add_argument('--batch-size', type=int, default=2, help='images per iteration (default: 2)')
    parser.add_argument('--iters', type=int, default=5, help='timed iterations (default: 5)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed iterations first (default: 1)')
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: torch\'s choice)')
    parser.add_argument('--out', type=Path, help='also write the result as JSON here')
    args = parser.parse_args(argv)
    result = measure(args.config, args.data_root, args.batch_size, args.iters, args.warmup, args.threads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + '\n', encoding='utf-8')
    return 0


if __name__ == '__main__':
    run_cli(main)
