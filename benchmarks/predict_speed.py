"""Step 5 speed: latency per slice (model load excluded) and peak memory, per config.

    python -m benchmarks.predict_speed [--configs A.py B.py] [--num-slices 10] [--device cpu]

For each config, an untrained checkpoint is written (weights do not change the cost of a forward pass), and
``step5_predict_expected_output.py`` runs on a stack of ``--num-slices`` slices as its own process under
``/usr/bin/time -v``, so the figures are those of a user's run: the per-slice latency step 5 reports (reading,
cropping, preprocessing and inference; model load excluded), the model load time it logs, and the peak resident
memory of the whole process. The stack is built from the real images in ``../shared/data`` when present,
otherwise from synthetic images.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = (REPO / 'cldetection_configs' / 'cascade_hrnet-s_cpu.py',
                   REPO / 'cldetection_configs' / 'hrnet-w32_udp_512x512.py',
                   REPO / 'cldetection_configs' / 'tiny_cpu.py')
SHARED_DATA = Path(os.environ.get('CLDETECTION_SHARED_DATA', REPO.parent / 'shared' / 'data'))


def build_stack(path: Path, num_slices: int) -> str:
    """The benchmark stack: real images when available (what users predict), else synthetic ones."""
    if path.exists():
        return 'existing'
    listing = SHARED_DATA / 'cl2023_subset' / 'images.txt'
    if listing.is_file():
        from cldetection.stack import build_stack as build
        images = [listing.parent / line.strip() for line in listing.read_text().splitlines()[:num_slices]]
        build(images, path, progress=False)
        return f'{num_slices} real images from {listing.parent}'
    from cldetection.synthetic import generate_synthetic_dataset
    stack, _ = generate_synthetic_dataset(path.parent / 'synthetic', num_images=num_slices, seed=0)
    stack.rename(path)
    return f'{num_slices} synthetic images'


def measure(config: Path, checkpoint: Path, stack: Path, out_json: Path, device: str,
            batch_size: Optional[int]) -> dict:
    """Run step 5 once under /usr/bin/time -v; return its latency, load time and peak RSS."""
    command = ['/usr/bin/time', '-v', sys.executable, str(REPO / 'step5_predict_expected_output.py'),
               '--config_file', str(config), '--load_weight_path', str(checkpoint), '--load_mha_path', str(stack),
               '--save_json_path', str(out_json), '--device', device, '--overwrite']
    if batch_size:
        command += ['--batch-size', str(batch_size)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, 'PYTHONPATH': str(REPO)})
    if result.returncode != 0:
        raise SystemExit(f'error: step 5 failed on {config.name}:\n{result.stderr[-3000:]}')
    per_slice = re.search(r'([\d.]+) s per slice', result.stdout)
    load = re.search(r'on \S+ in ([\d.]+) s \(', result.stderr)
    rss = re.search(r'Maximum resident set size \(kbytes\): (\d+)', result.stderr)
    wall = re.search(r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)', result.stderr)
    return {'config': config.name, 'per_slice_s': float(per_slice.group(1)), 'load_s': float(load.group(1)),
            'peak_rss_mib': int(rss.group(1)) / 1024, 'process_wall': wall.group(1)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.predict_speed', description=__doc__.split('\n\n')[0])
    parser.add_argument('--configs', nargs='+', type=Path, default=list(DEFAULT_CONFIGS))
    parser.add_argument('--num-slices', type=int, default=10)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch-size', type=int, default=None)
    parser.add_argument('--work-dir', type=Path, default=REPO / 'benchmarks' / 'work' / 'predict_speed')
    args = parser.parse_args(argv)
    if not Path('/usr/bin/time').is_file():
        raise SystemExit('error: /usr/bin/time not found (apt-get install time)')

    import torch  # noqa: E402  (after argument parsing: --help stays fast)

    import cldetection  # noqa: F401
    from cldetection.checkpoints import save_untrained_checkpoint

    args.work_dir.mkdir(parents=True, exist_ok=True)
    stack = args.work_dir / f'stack_{args.num_slices}.mha'
    source = build_stack(stack, args.num_slices)
    rows = []
    for config in args.configs:
        checkpoint = args.work_dir / f'{config.stem}_untrained.pth'
        save_untrained_checkpoint(config, checkpoint)  # always: the config may have changed since the last run
        rows.append(measure(config, checkpoint, stack, args.work_dir / f'{config.stem}.json', args.device,
                            args.batch_size))
    print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; device {args.device}; '
          f'stack: {stack.name} ({source})')
    print(f'{"config":34} {"s/slice":>8} {"load s":>7} {"peak RSS MiB":>13} {"process wall":>13}')
    for row in rows:
        print(f'{row["config"]:34} {row["per_slice_s"]:8.3f} {row["load_s"]:7.1f} {row["peak_rss_mib"]:13.0f} '
              f'{row["process_wall"]:>13}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
