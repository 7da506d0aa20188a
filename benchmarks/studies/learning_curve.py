"""Question: how many labelled images would a target accuracy need? A power law fitted to benchmark runs on nested
training subsets.

    python -m benchmarks.run ... --train-on-valid --train-images 39 --work-dir runs/lc39_f1   # and 77, and all
    python -m benchmarks.studies.learning_curve runs/lc39_f1 runs/lc77_f1 runs/full_f1 [--target-mre 1.5] \\
        [--at-images 300 450]

Runs are grouped by protocol, split (fold) and config (``--ignore-config``: protocol and split); runs of one
group at the same number of training images (seeds) are averaged. Per group with at least two sizes,
``MRE = a * N ** -b`` and ``100 - SDR 2 mm = c * N ** -d`` are fitted by least squares in log-log space (the
form learning curves of deep networks take over a range of data sizes), and the fit is read at ``--at-images``
and solved for the images that would reach ``--target-mre`` and ``--target-sdr``; so is the power law through
the two largest sizes alone (the exponent of the last step: the cautious reading when the curve flattens). An
extrapolation, not a measurement: it assumes more images of the same kind (the same centre and annotators) and
the same network and schedule; the printed residuals say how well three points lie on one line.
"""
from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cldetection.errors import fail, run_cli


def read_point(work_dir: Path) -> dict[str, Any]:
    """One run's group, training images and test metrics, from ``work_dir/result.json`` (:mod:`benchmarks.run`)."""
    path = work_dir / 'result.json'
    if not path.is_file():
        fail(path, 'file not found (a benchmarks.run work dir holds one when the run has finished)')
    try:
        result = json.loads(path.read_text())
        metrics = result['metrics'][result['primary_ground_truth']]
        return {'group': (result['protocol'], result['split'], Path(result['config']).stem),
                'images': int(result['data']['train_images']),
                'mre': float(metrics['MRE']), 'sdr2': float(metrics['SDR 2.0mm'])}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        fail(path, f'is not a benchmarks.run result: {err!r}')


def fit_power_law(images: Sequence[float], values: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares ``value = a * images ** -b`` in log-log space: ``(a, b, RMS residual of log value)``."""
    x, y = np.log(np.asarray(images, dtype=float)), np.log(np.asarray(values, dtype=float))
    if len(set(x.tolist())) < 2:
        raise ValueError('a power law needs at least two training-set sizes')
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(np.sqrt(np.mean((y - (intercept + slope * x)) ** 2)))
    return float(math.exp(intercept)), float(-slope), residual


def images_for(a: float, b: float, target: float) -> float:
    """The training images at which ``a * N ** -b`` reaches ``target`` (``inf`` when it never falls)."""
    if b <= 0:
        return math.inf
    exponent = math.log(a / target) / b
    return math.inf if exponent > 700 else math.exp(exponent)  # (a flat curve: beyond any float)


def summarize(points: list[dict[str, Any]], at_images: Sequence[int], target_mre: float,
              target_sdr: float, ignore_config: bool = False) -> list[dict[str, Any]]:
    """Per group: the mean of each size's runs, the two fits, their readings at ``at_images`` and the images
    needed for the targets. ``ignore_config``: group by protocol and split alone (runs of one recipe saved under
    two config names, e.g. an ablation that became the default)."""
    groups: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for point in points:
        groups[point['group'][:2] if ignore_config else point['group']][point['images']].append(point)
    summaries = []
    for group, by_size in sorted(groups.items()):
        sizes = sorted(by_size)
        configs = sorted({p['group'][2] for runs in by_size.values() for p in runs})
        mre = [float(np.mean([p['mre'] for p in by_size[n]])) for n in sizes]
        miss = [100.0 - float(np.mean([p['sdr2'] for p in by_size[n]])) for n in sizes]
        summary: dict[str, Any] = {'protocol': group[0], 'split': group[1], 'config': ' + '.join(configs),
                                   'sizes': sizes, 'runs': [len(by_size[n]) for n in sizes], 'mre': mre,
                                   'sdr2': [100.0 - m for m in miss]}
        if len(sizes) >= 2:
            a, b, res = fit_power_law(sizes, mre)
            c, d, res_sdr = fit_power_law(sizes, miss)
            # the exponent of each step between sizes: a curve that flattens (toward the error the labels
            # themselves carry) has falling exponents, and the last step's is the cautious one to extend
            steps = [fit_power_law(sizes[i:i + 2], mre[i:i + 2])[1] for i in range(len(sizes) - 1)]
            last_a = mre[-1] * sizes[-1] ** steps[-1]
            summary.update(mre_fit={'a': a, 'b': b, 'rms_log_residual': res},
                           sdr2_fit={'c': c, 'd': d, 'rms_log_residual': res_sdr},
                           step_exponents=steps,
                           at={int(n): {'mre': a * n ** -b, 'sdr2': 100.0 - c * n ** -d,
                                        'mre_last_step': last_a * n ** -steps[-1]} for n in at_images},
                           images_for_target_mre=images_for(a, b, target_mre),
                           images_for_target_mre_last_step=images_for(last_a, steps[-1], target_mre),
                           images_for_target_sdr2=images_for(c, d, 100.0 - target_sdr))
        summaries.append(summary)
    return summaries


def format_summary(summary: dict[str, Any], target_mre: float, target_sdr: float) -> str:
    lines = [f'{summary["protocol"]} {summary["split"]} {summary["config"]}']
    for n, runs, mre, sdr in zip(summary['sizes'], summary['runs'], summary['mre'], summary['sdr2']):
        lines.append(f'  {n:4d} images: MRE {mre:.3f} mm, SDR 2 mm {sdr:.2f} % ({runs} run{"s" * (runs > 1)})')
    if 'mre_fit' not in summary:
        lines.append('  (one training-set size: no fit)')
        return '\n'.join(lines)
    fit, sdr_fit = summary['mre_fit'], summary['sdr2_fit']
    lines.append(f'  fit: MRE = {fit["a"]:.3f} * N^-{fit["b"]:.3f} (RMS log residual {fit["rms_log_residual"]:.4f}); '
                 f'100 - SDR 2 mm = {sdr_fit["c"]:.1f} * N^-{sdr_fit["d"]:.3f} '
                 f'(residual {sdr_fit["rms_log_residual"]:.4f})')
    lines.append('  exponent of each step between sizes: ' +
                 ', '.join(f'{n0}->{n1}: {b:.3f}' for n0, n1, b in zip(summary['sizes'], summary['sizes'][1:],
                                                                      summary['step_exponents'])))
    for n, reading in summary['at'].items():
        lines.append(f'  read at {n} images: MRE {reading["mre"]:.3f} mm (last step\'s exponent: '
                     f'{reading["mre_last_step"]:.3f}), SDR 2 mm {reading["sdr2"]:.1f} %')
    lines.append(f'  images for MRE <= {target_mre} mm: {summary["images_for_target_mre"]:.0f} (last step\'s '
                 f'exponent: {summary["images_for_target_mre_last_step"]:.0f}); for SDR 2 mm >= {target_sdr} %: '
                 f'{summary["images_for_target_sdr2"]:.0f}')
    return '\n'.join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Fit MRE and SDR 2 mm against the number of training images over '
                                                 'benchmarks.run work dirs (nested subsets: --train-images) and '
                                                 'extrapolate.')
    parser.add_argument('work_dirs', nargs='+', type=Path, help='benchmarks.run work dirs (each with result.json)')
    parser.add_argument('--at-images', type=int, nargs='+', default=[300, 450],
                        help='training-set sizes to read the fits at (default: %(default)s)')
    parser.add_argument('--target-mre', type=float, default=1.5, help='MRE target in mm (default: %(default)s)')
    parser.add_argument('--target-sdr', type=float, default=75.0,
                        help='SDR 2 mm target in %% (default: %(default)s)')
    parser.add_argument('--ignore-config', action='store_true',
                        help='group runs by protocol and split alone, whatever their config is named (one recipe '
                             'saved under two names)')
    parser.add_argument('--json', type=Path, help='also write the summaries to this JSON file')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if any(n < 1 for n in args.at_images) or args.target_mre <= 0 or not 0 < args.target_sdr < 100:
        fail(None, '--at-images must be >= 1, --target-mre > 0 and --target-sdr in (0, 100)')
    summaries = summarize([read_point(d) for d in args.work_dirs], args.at_images, args.target_mre,
                          args.target_sdr, args.ignore_config)
    print('\n'.join(format_summary(s, args.target_mre, args.target_sdr) for s in summaries))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=1))
    return 0


if __name__ == '__main__':
    run_cli(main)
