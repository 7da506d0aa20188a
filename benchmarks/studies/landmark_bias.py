"""Question: is part of a model's error a constant per-landmark offset, and did the ISBI 2015 annotators drift? A
model's mean signed error on a split, and the annotators' offsets per split.

    python -m benchmarks.studies.landmark_bias model CONFIG CHECKPOINT --data-root DIR [--split test]
    python -m benchmarks.studies.landmark_bias annotators [--landmarks-csv ../shared/data/isbi2015/landmarks.csv]

``model``: per landmark, the mean of (prediction - ground truth) in mm (x, y), the MRE, the MRE about that
mean (what the MRE would be if the offset were removed), and the SD of the errors along their major and minor
axes (errors along one line: the position along a contour). A landmark whose error is mostly a constant offset
on the test split and none on the training split was annotated differently in the two.

``annotators``: per landmark and ISBI split, the mean of (senior - junior) in mm, its change from the
training images to Test1, and the SDs of (senior - junior) about each split's mean along its major and minor
axes. If the junior annotator is consistent, the change is the senior annotator's drift:
an offset the official (senior) Test1 ground truth has that no model trained on the training images can learn.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger('benchmarks.studies.landmark_bias')

REPO = Path(__file__).resolve().parents[2]
DEFAULT_LANDMARKS_CSV = REPO.parent / 'shared' / 'data' / 'isbi2015' / 'landmarks.csv'


def offset_table(errors_mm: np.ndarray) -> np.ndarray:
    """``N x K x 2`` signed errors (mm) -> ``K x 4``: mean dx, mean dy, MRE, MRE about the mean offset."""
    mean = errors_mm.mean(axis=0)
    return np.column_stack([mean, np.linalg.norm(errors_mm, axis=2).mean(axis=0),
                            np.linalg.norm(errors_mm - mean, axis=2).mean(axis=0)])


def error_spread(errors_mm: np.ndarray) -> np.ndarray:
    """``N x K x 2`` signed errors (mm) -> ``K x 2``: the SD of the errors about their mean along their major and
    minor principal axes. A ratio far above 1 means the errors lie along one line: for a landmark on a contour,
    where along the contour it is (which the image fixes least, and annotators agree on least), not how far
    off the contour."""
    centred = errors_mm - errors_mm.mean(axis=0)
    covariance = np.einsum('nki,nkj->kij', centred, centred) / max(len(errors_mm) - 1, 1)
    return np.sqrt(np.clip(np.linalg.eigvalsh(covariance)[:, ::-1], 0.0, None))


def model_errors(config: Path, checkpoint: Path, data_root: Optional[str], split: str, out_dir: Path) -> np.ndarray:
    """Signed errors (prediction - ground truth, mm) of every tested image and landmark: ``N x K x 2``.

    Step 4's test loop, with step 4's own collector of predictions (``PredictionCollector``)."""
    import cldetection  # noqa: F401  (registers our modules, applies the compat fixes)
    from cldetection.evaluate import PredictionCollector, build_test_runner

    runner = build_test_runner(config, checkpoint, split=split, out_dir=out_dir,
                               cfg_options=None if data_root is None else {'data_root': data_root})
    collector = PredictionCollector()
    runner.register_hook(collector, priority='LOWEST')
    runner.test()
    return np.stack([(p.pred - p.gt) * p.spacing for p in collector.predictions])


def annotator_offsets(landmarks_csv: Path) -> dict[str, np.ndarray]:
    """ISBI split -> ``N x 19 x 2`` (senior - junior) in mm."""
    from ..data import ISBI_SPACING_MM, read_isbi_annotations

    images = read_isbi_annotations(landmarks_csv)
    by_split: dict[str, list[np.ndarray]] = {}
    for name in sorted(images):
        image = images[name]
        by_split.setdefault(image.split, []).append(
            (image.annotations['senior'] - image.annotations['junior']) * ISBI_SPACING_MM)
    return {split: np.stack(offsets) for split, offsets in by_split.items()}


def _names(count: int) -> list[str]:
    from cldetection.landmarks import landmark_names

    names = landmark_names(count)
    return [f'{k + 1} {name}' for k, name in enumerate(names)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest='mode', required=True)
    model = modes.add_parser('model', help="a model's mean signed error per landmark")
    model.add_argument('config', type=Path, help='the config the checkpoint was trained with')
    model.add_argument('checkpoint', type=Path, help='checkpoint (.pth)')
    model.add_argument('--data-root', help='prepared dataset folder (data_root of the config otherwise)')
    model.add_argument('--split', default='test', choices=('train', 'valid', 'test'), help='default: %(default)s')
    annotators = modes.add_parser('annotators', help='ISBI 2015: senior - junior per landmark and split')
    annotators.add_argument('--landmarks-csv', type=Path, default=DEFAULT_LANDMARKS_CSV,
                            help='ISBI 2015 landmarks.csv (default: %(default)s)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')

    if args.mode == 'model':
        with tempfile.TemporaryDirectory() as tmp:
            errors = model_errors(args.config, args.checkpoint, args.data_root, args.split, Path(tmp))
        table, spread = offset_table(errors), error_spread(errors)
        print(f'{args.checkpoint}, {args.split} split, {len(errors)} images: prediction - ground truth')
        print(f'{"landmark":28s} | mean dx, dy mm | MRE mm | MRE about the mean offset | SD major, minor axis mm')
        for name, (dx, dy, mre, centred), (major, minor) in zip(_names(len(table)), table, spread):
            print(f'{name:28s} | {dx:6.2f} {dy:6.2f} | {mre:6.3f} | {centred:6.3f} | {major:5.2f} {minor:5.2f}')
        print(f'{"all":28s} | {errors[..., 0].mean():6.2f} {errors[..., 1].mean():6.2f} | '
              f'{table[:, 2].mean():6.3f} | {table[:, 3].mean():6.3f}')
        return 0

    offsets = annotator_offsets(args.landmarks_csv)
    splits = sorted(offsets)
    print('ISBI 2015, senior - junior, mean per landmark in mm (x, y); ' +
          ', '.join(f'{split}: {len(offsets[split])} images' for split in splits))
    means = {split: offset_table(offsets[split])[:, :2] for split in splits}
    header = ' | '.join(f'{split:>13s}' for split in splits)
    spread = error_spread(np.concatenate([offsets[split] - offsets[split].mean(axis=0) for split in splits]))
    print(f'{"landmark":28s} | {header} | change {splits[-1]} -> {splits[0]} | SD major, minor axis mm')
    for k, name in enumerate(_names(len(means[splits[0]]))):
        cells = ' | '.join(f'{means[s][k, 0]:6.2f} {means[s][k, 1]:6.2f}' for s in splits)
        change = means[splits[0]][k] - means[splits[-1]][k]
        print(f'{name:28s} | {cells} | {change[0]:6.2f} {change[1]:6.2f} ({np.linalg.norm(change):.2f} mm) | '
              f'{spread[k, 0]:5.2f} {spread[k, 1]:5.2f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
