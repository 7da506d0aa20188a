"""Question: how good would pseudo-labels be? Label the cl2023 images a model did not train on, and score the
labels.

Self-training (``benchmarks.studies.pseudo_labels``) labels the 107 ISBI 2015 images outside the cl2023 subset with a
trained model; those images also carry the ISBI senior annotator's 19 landmarks, which cl2023 kept for 62 % of
the points of its own images and re-annotated for the rest (``benchmarks.studies.label_agreement``). Which label a
student should learn from -- the model's, the senior's, or the senior's only where the model agrees with it
(:func:`benchmarks.studies.pseudo_labels.senior_gated_points`) -- can be measured where the answer is known: on the
cl2023 images of the fold the model did not train on (its test split, by default), labelled the way the 107
would be, against cl2023's ground truth. ::

    python -m benchmarks.studies.label_fusion --config DIR/config.py --checkpoint DIR/best.pth --fold 0 \\
        [--gates 0.5 1 1.5 2 3] [--splits test valid]

Prints, per labelling, the mean radial error (mm) of landmarks 1-19 (the only ones the senior labels) and of all
38 (landmarks 20-38 are the model's in every labelling), and per landmark the model's and the best gate's error.
Writes only the model's prediction (``--out-dir``, default ``<data-dir>/cl2023/label_fusion_fold<F>``), reused
when present.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from cldetection.challenge_io import load_landmarks
from cldetection.errors import fail, run_cli
from cldetection.landmarks import landmark_names
from cldetection.metric import radial_errors_mm

from ..data import (CL2023_NUM_LANDMARKS, DEFAULT_DATA_DIR, DEFAULT_SHARED_DATA, ISBI_NUM_LANDMARKS,
                   cl2023_fold_split, cl2023_image_paths, isbi_landmarks, prepare_cl2023, read_isbi_annotations)
from .pseudo_labels import senior_gated_points, senior_points_for

#: The seven landmarks ``benchmarks.studies.pseudo_labels --senior-landmarks`` was prepared with (cl2023 within
#: 0.5 mm of the senior on average): sella, pogonion, gonion, both incisal tips, upper lip, subnasale.
AGREEING_LANDMARKS = (1, 7, 10, 11, 12, 13, 15)


def labelling_errors(truth: np.ndarray, model: np.ndarray, senior: np.ndarray, spacing: np.ndarray,
                     gates: Sequence[float]) -> dict[str, np.ndarray]:
    """``{labelling: images x 38 radial errors (mm)}`` of each way to label images (``truth``, ``model``:
    images x 38 x 2 pixels; ``senior``: images x 19 x 2; ``spacing``: mm per pixel per image) against ``truth``.

    Labellings: ``model``; ``senior`` (its 19 points, the model's for 20-38); ``senior 7`` (the senior's for
    :data:`AGREEING_LANDMARKS` only); ``gate D mm`` for each gate (:func:`senior_gated_points`).
    """
    k = ISBI_NUM_LANDMARKS
    labellings: dict[str, list[np.ndarray]] = {'model': [], 'senior': [], 'senior 7': []}
    labellings.update({f'gate {g:g} mm': [] for g in gates})
    for t, m, s, mm in zip(truth, model, senior, spacing):
        first = {'model': m[:k], 'senior': s, 'senior 7': senior_points_for(m[:k], s, AGREEING_LANDMARKS)}
        first.update({f'gate {g:g} mm': senior_gated_points(m[:k], s, g, mm) for g in gates})
        for name, points in first.items():  # landmarks 20-38: the model's in every labelling
            labellings[name].append(radial_errors_mm(np.concatenate([points, m[k:]]), t, mm))
    return {name: np.stack(rows) for name, rows in labellings.items()}


def format_tables(errors: dict[str, np.ndarray]) -> list[str]:
    """Markdown: the labellings' MRE on landmarks 1-19 and on all 38; then per landmark 1-19 the model's, the
    senior's and the best gate's error."""
    k = ISBI_NUM_LANDMARKS
    lines = ['| labelling | landmarks 1-19 MRE mm | all 38 MRE mm | SDR 2 mm (38) % |', '| --- | --- | --- | --- |']
    for name, e in errors.items():
        lines.append(f'| {name} | {e[:, :k].mean():.3f} | {e.mean():.3f} | {100 * (e <= 2.0).mean():.2f} |')
    gates = [n for n in errors if n.startswith('gate')]
    best = min(gates, key=lambda n: errors[n].mean()) if gates else 'senior'
    names = landmark_names(k)
    lines += ['', f'| landmark | model mm | senior mm | {best} mm |', '| --- | --- | --- | --- |']
    for j in range(k):
        lines.append(f'| {j + 1} {names[j]} | {errors["model"][:, j].mean():.2f} | {errors["senior"][:, j].mean():.2f} '
                     f'| {errors[best][:, j].mean():.2f} |')
    return lines


def label_fusion(config: Path, checkpoint: Path, fold: int, gates: Sequence[float], splits: Sequence[str],
                 out_dir: Path | None, data_dir: Path, shared_data: Path) -> dict[str, np.ndarray]:
    from cldetection.predict import predict_stack_to_json

    for path in (config, checkpoint):
        if not path.is_file():
            fail(path, 'file not found')
    bad = [g for g in gates if not (np.isfinite(g) and g > 0)]
    if bad:
        fail('--gates', f'must be distances > 0 mm, got {bad[0]}')
    data = prepare_cl2023(data_dir, shared_data, fold)
    subset = shared_data / 'cl2023_subset'
    truth_set = load_landmarks(subset / 'train-gt.json')
    images = cl2023_image_paths(subset)
    split = cl2023_fold_split(len(images), fold)
    slices = sorted(z for s in splits for z in split[s])
    out_dir = out_dir or data_dir / 'cl2023' / f'label_fusion_fold{fold}'
    prediction_path = out_dir / f'prediction-{checkpoint.stem}.json'
    if not prediction_path.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        predict_stack_to_json(config, checkpoint, data.test_stack, prediction_path, slices=slices)
    prediction = load_landmarks(prediction_path, require_spacing=False)
    missing = [z for z in slices if z not in prediction.points]
    if missing:
        fail(prediction_path, f'has no prediction for slice {missing[0]} (delete it to predict again)')
    annotations = read_isbi_annotations(shared_data / 'isbi2015' / 'landmarks.csv')
    n = CL2023_NUM_LANDMARKS
    truth = np.stack([truth_set.as_array(z, n)[0] for z in slices])
    model = np.stack([np.array([prediction.points[z][j] for j in range(1, n + 1)], dtype=np.float64)
                      for z in slices])
    senior = np.stack([isbi_landmarks(annotations[images[z - 1].name], 'senior') for z in slices])
    spacing = np.array([truth_set.spacing[z] for z in slices])
    print(f'{len(slices)} cl2023 images of fold {fold} ({" + ".join(splits)}) labelled by {checkpoint}')
    return labelling_errors(truth, model, senior, spacing, gates)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', type=Path, required=True, help='config of a cl2023 model')
    parser.add_argument('--checkpoint', type=Path, required=True, help='its checkpoint, trained on --fold')
    parser.add_argument('--fold', type=int, required=True, help='the cl2023 fold the model was trained on')
    parser.add_argument('--gates', type=float, nargs='+', default=[0.5, 1.0, 1.5, 2.0, 3.0], metavar='MM',
                        help='agreement gates to measure (default: %(default)s)')
    parser.add_argument('--splits', nargs='+', choices=('test', 'valid'), default=['test'],
                        help='images to label: the fold\'s test split, and its valid split if asked '
                             '(the model picked its checkpoint on valid; default: %(default)s)')
    parser.add_argument('--out-dir', type=Path, default=None, help='where the prediction is kept')
    parser.add_argument('--data-dir', type=Path, default=DEFAULT_DATA_DIR,
                        help='benchmark data cache (default: %(default)s)')
    parser.add_argument('--shared-data', type=Path, default=DEFAULT_SHARED_DATA,
                        help='real data folder (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    errors = label_fusion(args.config, args.checkpoint, args.fold, args.gates, args.splits, args.out_dir,
                          args.data_dir, args.shared_data)
    print('\n'.join(format_tables(errors)))
    return 0


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
