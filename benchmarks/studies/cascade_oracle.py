"""Question: how precise is a trained cascade's local stage on its own? Test it with patches centred on the ground
truth.

    python -m benchmarks.studies.cascade_oracle CONFIG CHECKPOINT --data-root DIR [--split test] \\
        [--centre-jitter-mm 0 2.5] [--iterations 1]

Runs step 4's test (same pipeline and metric) per jitter value: as trained (the global stage's estimates as patch
centres), and with the patch centres replaced by the ground truth moved by a Gaussian of SD ``--centre-jitter-mm``
per axis (0: exactly on the truth). The gap between "as trained" and "centred on the truth" is what a perfect global
stage would buy; the "centred" figure is the local stage's own error floor, which only a better local stage lowers.
A diagnostic for choosing what to improve, not a result to report as the model's accuracy.

Public model API only: the global stage's estimates are the model's prediction with its local stage switched off
(``test_cfg['local'] = False``), and every refinement is ``model.local.refine`` from the centres given.

``--per-landmark`` adds one pass that scores every test point three ways at once: the global stage alone, the
cascade, and the local stage centred on the truth, and prints them per landmark (largest cascade-to-floor gap
first) and per band of the global stage's error. A landmark whose cascade stays near its global error while its
floor is low is one the local stage cannot find from its patch alone: it returns roughly the centre it was given.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

logger = logging.getLogger('benchmarks.studies.cascade_oracle')


def cascade_test_runner(config: Path, checkpoint: Path, data_root: Optional[str], split: str, iterations: int,
                        out_dir: Path, local: bool = True):
    """Step 4's test runner for a cascade checkpoint, with ``iterations`` local passes; ``local=False``: its
    model predicts with the global stage alone (``test_cfg['local'] = False``; ``model.local`` still refines).

    ``out_dir`` must outlive every call of a process: MMEngine's visualizer, a process-wide instance, keeps
    writing into the first call's folder.
    """
    import cldetection  # noqa: F401  (registers the cascade, applies the compat fixes)
    from cldetection.evaluate import build_test_runner

    options: dict[str, Any] = {'model.local.test.iterations': iterations}
    if not local:
        options['model.test_cfg.local'] = False
    if data_root is not None:
        options['data_root'] = data_root
    runner = build_test_runner(config, checkpoint, split=split, out_dir=out_dir, cfg_options=options)
    if not hasattr(runner.model, 'local'):
        raise SystemExit(f'{config}: not a cascade (no local stage to test)')
    return runner


def global_test_batches(runner) -> Iterator[tuple[Any, list]]:
    """Per batch of ``runner``'s test split: the batch and the model's predictions (``test_step``), which are the
    global stage's for a runner of :func:`cascade_test_runner` with ``local=False``. The model is put in eval
    mode."""
    import torch

    model = runner.model.eval()
    for batch in runner.test_loop.dataloader:
        with torch.no_grad():
            yield batch, model.test_step(batch)


def run_test(config: Path, checkpoint: Path, data_root: Optional[str], split: str, iterations: int,
             centre_jitter_mm: Optional[float], out_dir: Path, seed: int = 0) -> dict[str, float]:
    """Step 4's metrics for ``checkpoint``; ``centre_jitter_mm`` not None: patches centred on the jittered truth
    (``out_dir``: see :func:`cascade_test_runner`)."""
    if centre_jitter_mm is None:
        runner = cascade_test_runner(config, checkpoint, data_root, split, iterations, out_dir)
        return {k: float(v) for k, v in runner.test().items()}
    runner = cascade_test_runner(config, checkpoint, data_root, split, iterations, out_dir, local=False)
    model, evaluator = runner.model, runner.test_loop.evaluator
    rng = np.random.default_rng(seed)
    for batch, outputs in global_test_batches(runner):
        for sample in outputs:
            meta = sample.metainfo
            truth = np.asarray(sample.gt_instances.keypoints, dtype=np.float64)
            sd = centre_jitter_mm / float(meta['spacing'])
            centres = model.starting_points(truth + rng.normal(0.0, sd, truth.shape), meta['ori_shape'])
            refined = [model.local.refine(points, meta['source_img'], int(meta['source_factor']))[0]
                       for points in centres]
            sample.pred_instances.keypoints = np.stack(refined).astype(np.float32)
        evaluator.process(data_samples=outputs, data_batch=batch)
    return {k: float(v) for k, v in evaluator.evaluate(len(runner.test_loop.dataloader.dataset)).items()}


def coarse_test_points(runner) -> Iterator[tuple[dict, np.ndarray, np.ndarray, np.ndarray]]:
    """Per test image of ``runner`` (a :func:`cascade_test_runner` with ``local=False``): its ``meta``, the ground
    truth (``K x 2`` radiograph pixels), which points are labelled (``K`` booleans) and ``coarse``, the global
    stage's estimates as the local stage starts from them (``model.starting_points``: on the image)."""
    model = runner.model
    for _, outputs in global_test_batches(runner):
        for sample in outputs:
            meta = sample.metainfo
            truth = np.asarray(sample.gt_instances.keypoints, dtype=np.float64)[0]
            visible = np.asarray(sample.gt_instances.keypoints_visible, dtype=np.float64)[0].reshape(len(truth), -1)
            yield meta, truth, visible[:, 0] > 0, model.starting_points(sample.pred_instances.keypoints,
                                                                         meta['ori_shape'])[0]


def per_point_errors(config: Path, checkpoint: Path, data_root: Optional[str], split: str, iterations: int,
                     out_dir: Path) -> np.ndarray:
    """``P x 4`` rows, one per scored point: landmark (1-based), and the radial error in mm of the global stage
    alone (as the local stage starts from it: on the image), of the cascade (``model.local.refine`` from there, as
    the model predicts), and of the local stage alone with its patch centred on the truth (``iterations`` passes
    each)."""
    from cldetection.metric import radial_errors_mm

    runner = cascade_test_runner(config, checkpoint, data_root, split, iterations, out_dir, local=False)
    local = runner.model.local
    rows = []
    for meta, truth, labelled, coarse in coarse_test_points(runner):
        source, factor = meta['source_img'], int(meta['source_factor'])
        estimates = [coarse, local.refine(coarse, source, factor)[0], local.refine(truth, source, factor)[0]]
        errors = [radial_errors_mm(estimate, truth, float(meta['spacing'])) for estimate in estimates]
        for k in np.flatnonzero(labelled):
            rows.append((k + 1, *(e[k] for e in errors)))
    return np.asarray(rows, dtype=np.float64)


def print_per_landmark(rows: np.ndarray) -> None:
    """Per landmark and per band of the global stage's error: global, cascade and floor MRE (see the docstring)."""
    print(f'{len(rows)} points: global stage {rows[:, 1].mean():.3f} mm, cascade {rows[:, 2].mean():.3f}, '
          f'floor {rows[:, 3].mean():.3f}')
    print('landmark | global | cascade | floor | cascade - floor (mm)')
    table = [(int(k), *rows[rows[:, 0] == k, 1:].mean(axis=0)) for k in np.unique(rows[:, 0])]
    for k, glob, cascade, floor in sorted(table, key=lambda t: t[3] - t[2], reverse=True):
        print(f'{k:8d} | {glob:6.2f} | {cascade:7.2f} | {floor:5.2f} | {cascade - floor:5.2f}')
    print('global error (mm) | share % | cascade | floor | share of the MRE gap (mm)')
    for low, high in ((0, 2), (2, 4), (4, 6), (6, 9), (9, np.inf)):
        band = (rows[:, 1] >= low) & (rows[:, 1] < high)
        if band.any():
            gap = (rows[band, 2] - rows[band, 3]).sum() / len(rows)
            print(f'{low:4g} - {high:<4g}      | {100 * band.mean():7.1f} | {rows[band, 2].mean():7.3f} | '
                  f'{rows[band, 3].mean():5.3f} | {gap:.3f}')


def checkpoint_diagnostic_parser(doc: str) -> argparse.ArgumentParser:
    """The command line shared by the diagnostics that test one cascade checkpoint: ``config``, ``checkpoint``,
    ``--data-root`` and ``--split``; ``doc`` is the module docstring (its first paragraph is the description)."""
    parser = argparse.ArgumentParser(description=doc.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', type=Path, help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', type=Path, help='a cascade checkpoint (.pth)')
    parser.add_argument('--data-root', help='prepared dataset folder (data_root of the config otherwise)')
    parser.add_argument('--split', default='test', choices=('train', 'valid', 'test'), help='default: %(default)s')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = checkpoint_diagnostic_parser(__doc__)
    parser.add_argument('--centre-jitter-mm', type=float, nargs='+', default=[0.0, 2.5],
                        help='SD (mm, per axis) of the patch centres around the truth; several values: one test '
                             'each (default: %(default)s)')
    parser.add_argument('--iterations', type=int, default=1, help='local refinements (default: %(default)s)')
    parser.add_argument('--per-landmark', action='store_true',
                        help='also score every point three ways (global stage, cascade, floor) and print them per '
                             'landmark and per band of the global error')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')

    with tempfile.TemporaryDirectory() as tmp:
        test = [args.config, args.checkpoint, args.data_root, args.split, args.iterations]
        rows = [('as trained (global stage estimates)', run_test(*test, None, Path(tmp)))]
        for jitter in args.centre_jitter_mm:
            rows.append((f'centred on the truth + N(0, {jitter:g} mm)', run_test(*test, jitter, Path(tmp))))
        points = per_point_errors(*test, Path(tmp)) if args.per_landmark else None
    print(f'{args.checkpoint} on the {args.split} split, {args.iterations} local iteration(s):')
    print(f'{"patch centres":42s} | MRE mm | SDR 2 / 2.5 / 3 / 4 mm %')
    for name, m in rows:
        print(f'{name:42s} | {m["MRE"]:6.3f} | {m["SDR 2.0mm"]:.2f} / {m["SDR 2.5mm"]:.2f} / {m["SDR 3.0mm"]:.2f} / '
              f'{m["SDR 4.0mm"]:.2f}')
    if points is not None:
        print_per_landmark(points)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
