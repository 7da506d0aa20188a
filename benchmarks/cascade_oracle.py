"""How precise is a trained cascade's local stage on its own? Test it with patches centred on the ground truth.

    python -m benchmarks.cascade_oracle CONFIG CHECKPOINT --data-root DIR [--split test] \\
        [--centre-jitter-mm 0 2.5] [--iterations 1]

Runs step 4's test (same pipeline and metric) three ways per jitter value: as trained (the global stage's
estimates as patch centres), and with the patch centres replaced by the ground truth moved by a Gaussian of SD
``--centre-jitter-mm`` per axis (0: exactly on the truth). The gap between "as trained" and "centred on the
truth" is what a perfect global stage would buy; the "centred" figure is the local stage's own error floor,
which only a better local stage lowers. A diagnostic for choosing what to improve, not a result to report as
the model's accuracy.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

logger = logging.getLogger('benchmarks.cascade_oracle')


def run_test(config: Path, checkpoint: Path, data_root: Optional[str], split: str, iterations: int,
             centre_jitter_mm: Optional[float], out_dir: Path, seed: int = 0) -> dict[str, float]:
    """Step 4's metrics for ``checkpoint``; ``centre_jitter_mm`` not None: patches centred on the jittered truth.

    ``out_dir`` must outlive every call of a process: MMEngine's visualizer, a process-wide instance, keeps
    writing into the first call's folder.
    """
    import cldetection  # noqa: F401  (registers the cascade, applies the compat fixes)
    from cldetection.evaluate import build_test_runner

    options: dict[str, Any] = {'model.refine.test.iterations': iterations}
    if data_root is not None:
        options['data_root'] = data_root
    runner = build_test_runner(config, checkpoint, split=split, out_dir=out_dir, cfg_options=options)
    model = runner.model
    if not hasattr(model, 'coarse_predict'):
        raise SystemExit(f'{config}: not a cascade (no local stage to test)')
    if centre_jitter_mm is not None:
        rng = np.random.default_rng(seed)
        global_predict = model.coarse_predict

        def truth_as_coarse(inputs, data_samples):
            results = global_predict(inputs, data_samples)
            for result, sample in zip(results, data_samples):
                truth = np.asarray(sample.gt_instances.keypoints, dtype=np.float64)
                sd = centre_jitter_mm / float(sample.metainfo['spacing'])
                result.pred_instances.keypoints = (truth + rng.normal(0.0, sd, truth.shape)).astype(np.float32)
            return results

        model.coarse_predict = truth_as_coarse
    return {k: float(v) for k, v in runner.test().items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', type=Path, help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', type=Path, help='a cascade checkpoint (.pth)')
    parser.add_argument('--data-root', help='prepared dataset folder (data_root of the config otherwise)')
    parser.add_argument('--split', default='test', choices=('train', 'valid', 'test'), help='default: %(default)s')
    parser.add_argument('--centre-jitter-mm', type=float, nargs='+', default=[0.0, 2.5],
                        help='SD (mm, per axis) of the patch centres around the truth; several values: one test '
                             'each (default: %(default)s)')
    parser.add_argument('--iterations', type=int, default=1, help='local refinements (default: %(default)s)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')

    with tempfile.TemporaryDirectory() as tmp:
        test = [args.config, args.checkpoint, args.data_root, args.split, args.iterations]
        rows = [('as trained (global stage estimates)', run_test(*test, None, Path(tmp)))]
        for jitter in args.centre_jitter_mm:
            rows.append((f'centred on the truth + N(0, {jitter:g} mm)', run_test(*test, jitter, Path(tmp))))
    print(f'{args.checkpoint} on the {args.split} split, {args.iterations} local iteration(s):')
    print(f'{"patch centres":42s} | MRE mm | SDR 2 / 2.5 / 3 / 4 mm %')
    for name, m in rows:
        print(f'{name:42s} | {m["MRE"]:6.3f} | {m["SDR 2.0mm"]:.2f} / {m["SDR 2.5mm"]:.2f} / {m["SDR 3.0mm"]:.2f} / '
              f'{m["SDR 4.0mm"]:.2f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
