"""Question: what would averaging several trained models buy? Score their mean prediction with step 4's metric.

    python -m benchmarks.studies.ensemble_eval CONFIG1 CHECKPOINT1 CONFIG2 CHECKPOINT2 [...] --data-root DIR \\
        [--split test]

Every model tests the same images through its own config's test pipeline (step 4's setup); the ensemble's
estimate of a landmark is the mean of the models' estimates in radiograph pixels. Prints each model's metrics
and the ensemble's. A diagnostic for "is a second model worth its training and inference time?", not a
predictor: step 4 and step 5 run one model.
"""
from __future__ import annotations

import argparse
import copy
import logging
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger('benchmarks.studies.ensemble_eval')


def mean_of_predictions(outputs: Sequence[list]) -> list:
    """Per image, a copy of the first model's sample with ``pred_instances.keypoints`` the models' mean."""
    merged = []
    for samples in zip(*outputs):
        ids = {sample.metainfo.get('img_path') for sample in samples}
        if len(ids) != 1:
            raise RuntimeError(f'the models tested different images in the same place: {sorted(ids)}')
        mean = copy.deepcopy(samples[0])
        mean.pred_instances.keypoints = np.mean(
            [np.asarray(sample.pred_instances.keypoints, dtype=np.float64) for sample in samples], axis=0)
        merged.append(mean)
    return merged


def run_ensemble(models: Sequence[tuple[Path, Path]], data_root: Optional[str], split: str,
                 out_dir: Path) -> list[dict[str, float]]:
    """Metrics of each model, then of their mean prediction (the last entry)."""
    import torch

    import cldetection  # noqa: F401  (registers the cascade, applies the compat fixes)
    from cldetection.evaluate import build_test_runner

    options = {} if data_root is None else {'data_root': data_root}
    runners = [build_test_runner(config, checkpoint, split=split, out_dir=out_dir / f'model{index}',
                                 cfg_options=options) for index, (config, checkpoint) in enumerate(models)]
    for runner in runners:
        runner.model.eval()
    loops = [runner.test_loop for runner in runners]  # builds each model's dataloader and evaluator
    ensemble = runners[0].build_evaluator(dict(runners[0].cfg.test_evaluator, output_dir=str(out_dir / 'mean')))
    ensemble.dataset_meta = loops[0].dataloader.dataset.metainfo
    with torch.no_grad():
        for batches in zip(*(loop.dataloader for loop in loops)):
            outputs = []
            for runner, loop, batch in zip(runners, loops, batches):
                outputs.append(runner.model.test_step(batch))
                loop.evaluator.process(data_samples=outputs[-1], data_batch=batch)
            ensemble.process(data_samples=mean_of_predictions(outputs), data_batch=batches[0])
    count = len(loops[0].dataloader.dataset)
    return [{k: float(v) for k, v in loop.evaluator.evaluate(count).items()} for loop in loops] + \
        [{k: float(v) for k, v in ensemble.evaluate(count).items()}]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='+', type=Path,
                        help='CONFIG CHECKPOINT pairs (at least two models), each the config a checkpoint was '
                             'trained with')
    parser.add_argument('--data-root', help='prepared dataset folder (data_root of the configs otherwise)')
    parser.add_argument('--split', default='test', choices=('train', 'valid', 'test'), help='default: %(default)s')
    args = parser.parse_args(argv)
    if len(args.models) < 4 or len(args.models) % 2:
        parser.error('give CONFIG CHECKPOINT pairs for at least two models')
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    models = list(zip(args.models[0::2], args.models[1::2]))
    with tempfile.TemporaryDirectory() as tmp:
        results = run_ensemble(models, args.data_root, args.split, Path(tmp))
    names = [f'model {i}: {checkpoint}' for i, (_, checkpoint) in enumerate(models)] + ['mean of the models']
    print(f'{"":50s} | MRE mm | SDR 2 / 2.5 / 3 / 4 mm %')
    for name, m in zip(names, results):
        print(f'{name[-50:]:50s} | {m["MRE"]:6.3f} | {m["SDR 2.0mm"]:.2f} / {m["SDR 2.5mm"]:.2f} / '
              f'{m["SDR 3.0mm"]:.2f} / {m["SDR 4.0mm"]:.2f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
