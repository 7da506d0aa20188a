"""Question: could a shape prior correct the hard landmarks? Predict each landmark from the model's other
estimates.

    python -m benchmarks.studies.shape_prior CONFIG CHECKPOINT --data-root DIR [--split test]

For each landmark j, a ridge regression fitted on the labelled shapes of the training images (``train.json`` and
``valid.json`` of DIR, in mm) predicts j's position from the other K - 1 landmarks (its ridge strength chosen by
5-fold cross-validation on those shapes). Applied to the model's estimates of the tested images, it gives a second,
shape-only estimate of every landmark. Printed: the model's MRE, the prior's, the two blended with one weight for
every landmark, and the best weight per landmark chosen *on the tested images themselves* -- an upper bound on what
any blending rule could buy, not a method. A diagnostic: no step uses it.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .cascade_oracle import checkpoint_diagnostic_parser

logger = logging.getLogger('benchmarks.studies.shape_prior')

ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
BLEND_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)


def labelled_shapes(ann_files: Sequence[Path]) -> np.ndarray:
    """``N x K x 2`` landmark positions in mm of every annotation in the COCO files (``spacing`` per image)."""
    shapes = []
    for path in ann_files:
        document = json.loads(Path(path).read_text())
        spacing = {image['id']: float(image.get('spacing', 0.1)) for image in document['images']}
        for ann in document['annotations']:
            shapes.append(np.asarray(ann['keypoints'], dtype=np.float64).reshape(-1, 3)[:, :2]
                          * spacing[ann['image_id']])
    return np.stack(shapes)


def fit_conditional_landmark(shapes: np.ndarray, landmark: int, alpha: float
                             ) -> Callable[[np.ndarray], np.ndarray]:
    """Ridge regression of ``landmark``'s position on the other landmarks' (``shapes``: N x K x 2); returns a
    function of ``M x K x 2`` shapes (only the other landmarks are read) giving ``M x 2`` positions."""
    others = [k for k in range(shapes.shape[1]) if k != landmark]
    features = shapes[:, others].reshape(len(shapes), -1)
    feature_mean, target_mean = features.mean(0), shapes[:, landmark].mean(0)
    centred = features - feature_mean
    weights = np.linalg.solve(centred.T @ centred + alpha * np.eye(centred.shape[1]),
                              centred.T @ (shapes[:, landmark] - target_mean))
    return lambda query: (query[:, others].reshape(len(query), -1) - feature_mean) @ weights + target_mean


def cross_validated_error(shapes: np.ndarray, alpha: float, folds: int = 5, seed: int = 0) -> float:
    """Mean radial error (mm) of the conditional predictions of every landmark, ``folds``-fold cross-validated."""
    order = np.random.default_rng(seed).permutation(len(shapes))
    errors = []
    for held_out in np.array_split(order, folds):
        kept = np.setdiff1d(order, held_out)
        for landmark in range(shapes.shape[1]):
            predicted = fit_conditional_landmark(shapes[kept], landmark, alpha)(shapes[held_out])
            errors.append(np.linalg.norm(predicted - shapes[held_out, landmark], axis=1))
    return float(np.concatenate(errors).mean())


def shape_prior_estimates(train_shapes: np.ndarray, estimates: np.ndarray, alpha: float) -> np.ndarray:
    """Every landmark of ``estimates`` (M x K x 2, mm) predicted from the others by the training shapes' prior."""
    return np.stack([fit_conditional_landmark(train_shapes, j, alpha)(estimates)
                     for j in range(train_shapes.shape[1])], axis=1)


def blend_report(estimates: np.ndarray, prior: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MRE (mm) of the model, of the prior, of fixed blends, and of the per-landmark best blend (an oracle)."""
    def mre(points: np.ndarray) -> np.ndarray:
        return np.linalg.norm(points - truth, axis=-1)

    report = {'model': float(mre(estimates).mean()), 'prior': float(mre(prior).mean())}
    for weight in BLEND_WEIGHTS[1:]:
        report[f'blend {weight:.1f}'] = float(mre((1 - weight) * estimates + weight * prior).mean())
    grid = np.linspace(0.0, 1.0, 11)
    per_landmark = np.stack([mre((1 - w) * estimates + w * prior).mean(0) for w in grid])  # weights x K
    report['oracle per-landmark blend'] = float(per_landmark.min(0).mean())
    return report


def test_predictions(config: Path, checkpoint: Path, data_root: Optional[str], split: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The model's estimates and the ground truth of ``split`` (``M x K x 2``, mm), as step 4 tests them (step 4's
    own ``PredictionCollector`` on its test runner)."""
    import cldetection  # noqa: F401  (registers the modules, applies the compat fixes)
    from cldetection.evaluate import PredictionCollector, build_test_runner

    options = {} if data_root is None else {'data_root': data_root}
    with tempfile.TemporaryDirectory() as tmp:
        runner = build_test_runner(config, checkpoint, split=split, out_dir=Path(tmp), cfg_options=options)
        collector = PredictionCollector()
        runner.register_hook(collector, priority='LOWEST')
        runner.test()
    predictions = collector.predictions
    return (np.stack([p.pred * p.spacing for p in predictions]),
            np.stack([p.gt * p.spacing for p in predictions]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = checkpoint_diagnostic_parser(__doc__)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    if args.data_root is None:
        parser.error('--data-root is needed: the prior is fitted on its train.json (and valid.json)')
    root = Path(args.data_root)
    ann_files = [root / name for name in ('train.json', 'valid.json') if (root / name).is_file()]
    if not ann_files:
        parser.error(f'{root} has no train.json')
    train_shapes = labelled_shapes(ann_files)
    cv_errors = {alpha: cross_validated_error(train_shapes, alpha) for alpha in ALPHAS}
    alpha = min(cv_errors, key=cv_errors.get)
    print(f'shape prior fitted on {len(train_shapes)} labelled shapes; cross-validated MRE on them: '
          + ', '.join(f'alpha {a:g}: {e:.3f} mm' for a, e in cv_errors.items()) + f' (using {alpha:g})')
    estimates, truth = test_predictions(args.config, args.checkpoint, args.data_root, args.split)
    report = blend_report(estimates, shape_prior_estimates(train_shapes, estimates, alpha), truth)
    print(f'{len(truth)} {args.split} images, MRE mm:')
    for name, value in report.items():
        print(f'  {name:28s} {value:.3f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
