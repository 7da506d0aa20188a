"""Step 5 with PyTorch against step 5 with the CPU inference engine: seconds per image and peak memory.

    python -m benchmarks.engine_speed [--num-images 10] [--engines pytorch onnxruntime] [--config CONFIG]

Writes an untrained checkpoint of ``--config`` (default: the CPU cascade; weights do not change the cost) and a
stack of the first ``--num-images`` real ISBI 2015 radiographs (``../shared/data/isbi2015/images/*.jpg``), then runs
``step5_predict_expected_output.py --device cpu --engine E`` once per engine, each as its own process, and prints
what a user's run costs: seconds per image as step 5 logs them (reading, cropping, preprocessing and both stages;
model load, and with it the one-off ONNX export, excluded), the CPU seconds per image of all its threads (what
the run takes of the machine, which a busy machine's wall time hides), the load time, the process's peak resident
memory, and how far the engine's landmarks are from PyTorch's. The CPU's model and vector extensions are printed with them,
because they decide which engine is faster (AVX2 only, AVX-512, AVX512-BF16, AMX). Run it on an idle machine.
The rows are appended to the section "Step 5: PyTorch against ONNX Runtime" of ``benchmarks/RESULTS.md`` (not for
``--checkpoint``: the section is of untrained weights), from which ``benchmarks.summary`` makes the speed per CPU
class. ``--engines ... onnxruntime-int8`` quantises the untrained weights first (``python -m cldetection.quantize``).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / 'cldetection_configs' / 'cascade_hrnet-s_cpu.py'
SHARED_DATA = Path(os.environ.get('CLDETECTION_SHARED_DATA', REPO.parent / 'shared' / 'data'))
#: /proc/cpuinfo flags that decide the speed of float32 and bfloat16 convolutions, with the names we print.
CPU_FLAGS = {'avx2': 'AVX2', 'avx512f': 'AVX-512', 'avx512_bf16': 'AVX512-BF16', 'amx_tile': 'AMX'}


def cpu_description() -> str:
    """The CPU's model name and which of :data:`CPU_FLAGS` it has, plus the usable cores."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            key, _, value = line.partition(':')
            if key.strip() == 'model name':
                name = value.strip()
            elif key.strip() == 'flags':
                flags = set(value.split())
                break
    except OSError:
        pass
    extensions = ', '.join(f'{label} {"yes" if flag in flags else "no"}' for flag, label in CPU_FLAGS.items())
    return f'{name}, {len(os.sched_getaffinity(0))} cores ({extensions})'


def run_step5(config: Path, checkpoint: Path, stack: Path, out_json: Path, engine: str,
              threads: Optional[int]) -> dict:
    """One step 5 process; its seconds per image, load time and peak RSS (``wait4``: this child's alone)."""
    command = [sys.executable, str(REPO / 'step5_predict_expected_output.py'), '--config_file', str(config),
               '--load_weight_path', str(checkpoint), '--load_mha_path', str(stack), '--save_json_path',
               str(out_json), '--device', 'cpu', '--engine', engine, '--overwrite']
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)  # torch's threads, and the engine's, which follow torch's
    with tempfile.TemporaryFile('w+') as stdout, tempfile.TemporaryFile('w+') as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=REPO, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        log = stderr.read()
    if process.returncode != 0:
        raise SystemExit(f'error: step 5 with --engine {engine} failed:\n{log[-3000:]}')
    predicted = re.search(r'(\d+) slices in ([\d.]+) s \([\d.]+ s per slice, ([\d.]+) CPU s per slice', log)
    load = re.search(r' in ([\d.]+) s \(\d+ landmarks, batch size \d+, engine ([\w-]+)\)', log)
    return {'engine': load.group(2), 'requested': engine, 'seconds_per_image': float(predicted.group(2))
            / int(predicted.group(1)), 'cpu_seconds_per_image': float(predicted.group(3)),
            'load_s': float(load.group(1)), 'peak_rss_mib': usage.ru_maxrss / 1024}


def landmarks(path: Path):
    """``N x 2`` points of a prediction JSON."""
    import numpy as np

    return np.array([p['point'][:2] for p in json.loads(path.read_text())['points']])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.engine_speed', description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', type=Path, default=DEFAULT_CONFIG, help='default: %(default)s')
    parser.add_argument('--num-images', type=int, default=10, help='ISBI 2015 images in the stack (default 10)')
    parser.add_argument('--images', type=Path, default=SHARED_DATA / 'isbi2015' / 'images',
                        help='folder of the radiographs (*.jpg, the first --num-images by name; default %(default)s)')
    parser.add_argument('--engines', nargs='+', default=['pytorch', 'onnxruntime'],
                        help='step 5 --engine values to run, in this order (default: pytorch onnxruntime); '
                             'onnxruntime-int8 first quantises the untrained weights on the stack\'s images (python '
                             '-m cldetection.quantize), or needs --checkpoint quantised already')
    parser.add_argument('--checkpoint', type=Path, default=None,
                        help='weights of --config to predict with (default: untrained ones, as fast; untrained '
                             'heatmaps are flat, so the engines\' landmarks agree less closely than trained ones\')')
    parser.add_argument('--threads', type=int, default=None,
                        help='threads of each step 5 process (OMP_NUM_THREADS; default: torch\'s, one per core)')
    parser.add_argument('--work-dir', type=Path, default=REPO / 'benchmarks' / 'work' / 'engine_speed')
    parser.add_argument('--label', default='',
                        help='note for the CPU cell of the rows, e.g. "emulated AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 '
                             'ATEN_CPU_CAPABILITY=avx2)" or "run 2"')
    parser.add_argument('--results', type=Path, default=REPO / 'benchmarks' / 'RESULTS.md',
                        help='RESULTS.md whose step 5 engine section gets the rows (default: %(default)s)')
    parser.add_argument('--no-results', action='store_true', help='print only')
    args = parser.parse_args(argv)
    images = sorted(args.images.glob('*.jpg'))[:args.num_images]
    if len(images) < args.num_images or args.num_images < 1:
        raise SystemExit(f'error: {args.images}: {len(images)} *.jpg found, --num-images {args.num_images} asked')

    import numpy as np  # after argument parsing: --help stays fast
    import torch

    import cldetection  # noqa: F401
    from cldetection.checkpoints import save_untrained_checkpoint
    from cldetection.stack import build_stack

    from .run import git_commit

    args.work_dir.mkdir(parents=True, exist_ok=True)
    stack = args.work_dir / f'isbi_{args.num_images}.mha'
    if not stack.exists():
        build_stack(images, stack, progress=False)
    checkpoint = args.checkpoint or args.work_dir / f'{args.config.stem}_untrained.pth'
    if args.checkpoint is None:
        with open(os.devnull, 'w') as quiet, contextlib.redirect_stdout(quiet):  # MMEngine's weight-init report
            save_untrained_checkpoint(args.config, checkpoint)  # always: the config may have changed since
    if 'onnxruntime-int8' in args.engines and args.checkpoint is None:
        # the untrained weights' int8 networks, quantised on the benchmark's own images (as fast as trained ones')
        subprocess.run([sys.executable, '-m', 'cldetection.quantize', '--config_file', str(args.config),
                        '--load_weight_path', str(checkpoint), '--images', *map(str, images), '--overwrite'],
                       check=True, cwd=REPO, env={**os.environ, 'PYTHONPATH': str(REPO)}, capture_output=True)
    rows = [run_step5(args.config, checkpoint, stack, args.work_dir / f'{engine}.json', engine, args.threads)
            for engine in args.engines]
    reference = landmarks(args.work_dir / f'{args.engines[0]}.json')
    versions = [f'torch {torch.__version__}']
    try:
        import onnxruntime
        versions.append(f'onnxruntime {onnxruntime.__version__}')
    except ImportError:
        pass
    print(f'CPU: {cpu_description()}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}, '
          f'{args.threads or torch.get_num_threads()} threads; {", ".join(versions)}; '
          f'load average {os.getloadavg()[0]:.1f}')
    weights = checkpoint.name if args.checkpoint else 'untrained weights'
    print(f'config {args.config.name} ({weights}), stack of {args.num_images} ISBI 2015 images '
          f'({images[0].name}..{images[-1].name}), step 5 --device cpu')
    print(f'{"--engine":12} {"ran":12} {"s/image":>8} {"CPU s/image":>12} {"load s":>7} {"peak RSS MiB":>13} '
          f'{"px from " + args.engines[0] + " (mean, max)":>32}')
    cpu = cpu_description() + (f'; {args.label}' if args.label else '')
    table = []
    for row in rows:
        distances = np.linalg.norm(landmarks(args.work_dir / f'{row["requested"]}.json') - reference, axis=1)
        print(f'{row["requested"]:12} {row["engine"]:12} {row["seconds_per_image"]:8.3f} '
              f'{row["cpu_seconds_per_image"]:12.3f} {row["load_s"]:7.1f} '
              f'{row["peak_rss_mib"]:13.0f} {distances.mean():23.4f} {distances.max():8.4f}')
        table.append({'CPU': cpu, 'Engine': row['engine'], 'Images': str(args.num_images),
                      's/image': f'{row["seconds_per_image"]:.3f}',
                      'CPU s/image': f'{row["cpu_seconds_per_image"]:.3f}',
                      'Load s': f'{row["load_s"]:.1f}', 'Peak RSS MiB': f'{row["peak_rss_mib"]:.0f}',
                      'px from pytorch (mean / max)': f'{distances.mean():.4f} / {distances.max():.4f}'
                      if args.engines[0] == 'pytorch' else '',
                      'torch': torch.__version__, 'Date': datetime.date.today().isoformat(),
                      'Commit': git_commit()[:12]})
    if not args.no_results and args.checkpoint is None:  # the table's rows are all of untrained weights
        print(f'wrote {append_section_rows(args.results, table)}')
    return 0


SECTION_START = '<!-- engine-speed: written by python -m benchmarks.engine_speed; edits are lost -->'
SECTION_END = '<!-- /engine-speed -->'
SECTION_HEADING = '## Step 5: PyTorch against ONNX Runtime (`python -m benchmarks.engine_speed`)'
COLUMNS = ('CPU', 'Engine', 'Images', 's/image', 'CPU s/image', 'Load s', 'Peak RSS MiB',
           'px from pytorch (mean / max)', 'torch', 'Date', 'Commit')
SECTION_INTRO = (
    'Written by `python -m benchmarks.engine_speed` (rows appended): step 5 (`step5_predict_expected_output.py '
    '--device cpu --engine E`, each engine in its own process) on a stack of ISBI 2015 images 001-0NN, the default '
    'config `cascade_hrnet-s_cpu.py` with untrained weights (weights do not change the cost; onnxruntime-int8 '
    'quantised on the same images); seconds per image as step 5 logs them (reading, cropping, preprocessing, both '
    'stages; model load and the one-off ONNX export excluded), CPU seconds of all threads, peak RSS of the process, '
    'and the engine\'s landmarks against PyTorch\'s (untrained heatmaps are flat, so some points move by a '
    'fraction of a pixel, and int8 ones by many: its accuracy on trained weights is the int8 section\'s). 2 threads. '
    'This VM\'s timings vary by 10-25 % between identical runs (nothing else running): compare rows of the same run.')


def append_section_rows(results_md: Path, rows: list[dict[str, str]]) -> Path:
    """Append ``rows`` to the section's table (created, with the rows already there, when missing)."""
    from benchmarks.results import read_lines, section_rows, table_section, write_section

    old = section_rows(read_lines(results_md), SECTION_START, SECTION_END, results_md)
    section = table_section(SECTION_START, SECTION_HEADING, SECTION_INTRO, COLUMNS, [*old, *rows], SECTION_END)
    return write_section(results_md, section, SECTION_START, SECTION_END, above='## Cascade ablation')


if __name__ == '__main__':
    sys.exit(main())
