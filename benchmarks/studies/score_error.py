"""Question: does a model know when it is wrong? Its landmark scores (heatmap peaks) against its errors on a cl2023
test fold.

    python -m benchmarks.studies.score_error --config DIR/config.py --checkpoint DIR/best.pth --fold F

For self-training (``benchmarks.studies.pseudo_labels``): a pseudo-label could be left out (keypoint weight 0) where the
labelling model is unsure, but only if a low score marks a large error. The fold's test slices of the cl2023
stack go through step 5's predictor; each landmark's score is ranked within its landmark (scores of hard and
easy landmarks differ in scale), and the table shows the error of the lowest-ranked fraction against the rest,
and how many of the errors over 4 mm that fraction holds. Prints Spearman's rank correlation of score and error.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from cldetection.challenge_io import load_landmarks
from cldetection.errors import fail, run_cli
from cldetection.metric import radial_errors_mm

from ..data import DEFAULT_DATA_DIR, DEFAULT_SHARED_DATA, prepare_cl2023

FRACTIONS = (0.1, 0.2, 0.3)
LARGE_ERROR_MM = 4.0


def ranks(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Ranks 0..n-1 along ``axis`` (ties, which heatmap peaks do not have, in order)."""
    return np.argsort(np.argsort(values, axis=axis, kind='stable'), axis=axis, kind='stable').astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two flat arrays."""
    ra, rb = ranks(np.ravel(a)), ranks(np.ravel(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def score_error_table(scores: np.ndarray, errors: np.ndarray,
                      fractions: Sequence[float] = FRACTIONS) -> list[dict[str, float]]:
    """``scores``, ``errors``: images x landmarks. Per fraction f: the lowest-scored f of each landmark's images
    against the rest -- their MREs and the share of errors > 4 mm among the low-scored."""
    n = scores.shape[0]
    rank = ranks(scores, axis=0)  # per landmark, 0 = least certain
    large = errors > LARGE_ERROR_MM
    rows = []
    for fraction in fractions:
        low = rank < round(fraction * n)
        rows.append({'fraction': fraction, 'low_mre': float(errors[low].mean()), 'rest_mre': float(errors[~low].mean()),
                     'large_in_low': float(large[low].sum() / max(large.sum(), 1))})
    return rows


def measure(config: Path, checkpoint: Path, fold: int, data_dir: Path, shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Scores and radial errors (mm), test images x landmarks, of a cl2023 fold model on its test fold."""
    from cldetection.predict import LandmarkPredictor

    for path in (config, checkpoint):
        if not path.is_file():
            fail(path, 'file not found')
    data = prepare_cl2023(data_dir, shared_data, fold)  # the cached stack and fold (built if absent)
    slices = data.test_slices
    truth = load_landmarks(shared_data / 'cl2023_subset' / 'train-gt.json')
    prediction = LandmarkPredictor(config, checkpoint, device='cpu').predict_stack(data.test_stack, slices=slices,
                                                                                progress=False)
    scores = np.stack([prediction.scores[z] for z in slices])
    errors = np.stack([radial_errors_mm(prediction.points[z], truth.as_array(z)[0], truth.spacing[z])
                       for z in slices])
    return scores, errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', type=Path, required=True, help='config of a cl2023 fold model')
    parser.add_argument('--checkpoint', type=Path, required=True, help='its checkpoint')
    parser.add_argument('--fold', type=int, required=True, help='the fold it was trained for (its test fold)')
    parser.add_argument('--data-dir', type=Path, default=DEFAULT_DATA_DIR,
                        help='benchmark data cache (default: %(default)s)')
    parser.add_argument('--shared-data', type=Path, default=DEFAULT_SHARED_DATA,
                        help='real data folder (default: %(default)s)')
    args = parser.parse_args(argv)
    scores, errors = measure(args.config, args.checkpoint, args.fold, args.data_dir, args.shared_data)
    per_landmark = [spearman(scores[:, k], errors[:, k]) for k in range(scores.shape[1])]
    print(f'{errors.shape[0]} test images x {errors.shape[1]} landmarks: MRE {errors.mean():.3f} mm; Spearman '
          f'rho(score, error) {spearman(scores, errors):+.3f} over all points, {np.mean(per_landmark):+.3f} '
          f'mean within a landmark')
    print(f'| least certain (per landmark) | their MRE mm | the rest\'s MRE mm | share of errors > {LARGE_ERROR_MM:g} mm |')
    print('| --- | --- | --- | --- |')
    for row in score_error_table(scores, errors):
        print(f'| {row["fraction"]:.0%} | {row["low_mre"]:.3f} | {row["rest_mre"]:.3f} | {row["large_in_low"]:.0%} |')
    return 0


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
