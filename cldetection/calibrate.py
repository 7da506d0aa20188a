"""Calibrate a trained model's predicted errors on labelled radiographs it did not train on.

    python -m cldetection.calibrate --config_file CONFIG --load_weight_path WEIGHTS.pth \
        --ann_file data/valid.json [--coverage 0.9] [--overwrite]

predicts every image of a COCO annotation file as step 2 writes them (``valid.json``: images the model was
validated on but not trained on; the images are found in ``images/`` beside the file, as step 2 lays them out,
or by absolute path), compares each landmark with its label, and fits :class:`cldetection.confidence.
ErrorCalibration` on them: two of every three images (in the file's order) fit the typical error, the third gives
the conformal quantile (the fit gains most from images; the quantile needs few, as every image gives K points). The calibration is written beside the weights (``WEIGHTS.pth.calibration.json``), where step 5
finds it. Use images drawn like those you will predict: a calibration says how the model errs on *such* images.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from .confidence import DEFAULT_COVERAGE, DEFAULT_SIGNALS, SIGNAL_OFFSETS, ErrorCalibration, calibration_path, \
    file_sha256, fit_calibration, landmark_signals
from .errors import claim_output, fail, releasing_claims, run_cli

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledImage:
    """A radiograph with its labelled landmarks (``K x 2`` pixels; NaN where not labelled) and spacing."""
    path: Path
    keypoints: np.ndarray
    spacing_mm: float


def read_labelled_images(ann_file: str | Path) -> list[LabelledImage]:
    """The images of a step 2 COCO annotation file, with their landmarks and spacing (``images[].spacing``)."""
    from .challenge_io import read_json

    ann_file = Path(ann_file)
    document = read_json(ann_file)
    try:
        annotations = {a['image_id']: a for a in document['annotations']}
        images = []
        for entry in document['images']:
            keypoints = np.asarray(annotations[entry['id']]['keypoints'], dtype=np.float64).reshape(-1, 3)
            points = np.where(keypoints[:, 2:] > 0, keypoints[:, :2], np.nan)
            name = Path(entry['file_name'])
            path = name if name.is_absolute() else ann_file.parent / 'images' / name
            images.append(LabelledImage(path, points, float(entry['spacing'])))
    except (KeyError, TypeError, ValueError) as err:
        fail(ann_file, f'not a step 2 annotation file with spacing: {type(err).__name__}: {err}')
    if not images:
        fail(ann_file, 'has no images')
    return images


@dataclass
class LabelledPredictions:
    """Predictions of ``N`` labelled images: points and truth (``N x K x 2`` px), spacing (``N``), signals, image
    sizes (``N x 2``: width, height)."""
    points: np.ndarray
    truth: np.ndarray
    spacing_mm: np.ndarray
    signals: dict[str, np.ndarray]
    names: list[str]
    sizes: np.ndarray

    @property
    def error_vectors_mm(self) -> np.ndarray:
        return (self.points - self.truth) * self.spacing_mm[:, None, None]

    @property
    def errors_mm(self) -> np.ndarray:
        return np.linalg.norm(self.error_vectors_mm, axis=-1)


def predict_labelled(predictor, images: Sequence[LabelledImage], progress: bool = True) -> LabelledPredictions:
    """Predict ``images`` with a :class:`cldetection.predict.LandmarkPredictor`, keeping the error signals."""
    from .image_io import read_radiograph

    points, signals, sizes = [], [], []
    for image in tqdm(images, desc='predict', unit='image', disable=not progress):
        rgb = read_radiograph(image.path).image  # read as step 5 --images reads the radiographs it is used on
        sizes.append(rgb.shape[1::-1])
        fields = predictor.predict_with_signals([rgb])[0]
        points.append(fields['keypoints'])
        signals.append(landmark_signals(fields, image.spacing_mm))
    names = sorted(signals[0])
    return LabelledPredictions(np.stack(points), np.stack([i.keypoints for i in images]),
                               np.array([i.spacing_mm for i in images]),
                               {name: np.stack([s[name] for s in signals]) for name in names},
                               [i.path.name for i in images], np.array(sizes))


def fit_split(count: int) -> np.ndarray:
    """``count`` booleans, False for every third item (the 3rd, 6th, ...): True are a calibration's fit images, the
    rest its conformal images. The fit ranks errors better the more images it has (on cl2023 fold 1's test images,
    fitting on all images but the one predicted ranked them better than fitting on half of them); the conformal
    quantile needs fewer, as each image gives it K points."""
    return np.arange(count) % 3 != 2


@releasing_claims()
def calibrate(config_file: str | Path, checkpoint_file: str | Path, ann_file: str | Path, *,
              coverage: float = DEFAULT_COVERAGE, signals: Optional[Sequence[str]] = None, device: str = 'auto',
              engine: str = 'auto', overwrite: bool = False, progress: bool = True) -> tuple[Path, ErrorCalibration]:
    """Calibrate ``checkpoint_file``'s errors on the images of ``ann_file``; write and return the calibration.

    ``signals``: by default :data:`~cldetection.confidence.DEFAULT_SIGNALS` (a cascade's), or for a model that does
    not give them (a plain heatmap model) the signals it does give (its heatmap peaks)."""
    from .predict import LandmarkPredictor

    if not 0 < coverage < 1:
        fail(None, f'--coverage must lie between 0 and 1, got {coverage}')
    unknown = sorted(set(signals or ()) - set(SIGNAL_OFFSETS))
    if unknown:
        fail(None, f'unknown signals {unknown}; known: {sorted(SIGNAL_OFFSETS)}')
    out = claim_output(calibration_path(checkpoint_file), overwrite).path
    images = read_labelled_images(ann_file)
    if len(images) < 4:
        fail(ann_file, f'has {len(images)} images; a calibration needs at least 4')
    predictor = LandmarkPredictor(config_file, checkpoint_file, device=device, engine=engine)
    if images[0].keypoints.shape[0] != predictor.num_landmarks:
        fail(ann_file, f'labels {images[0].keypoints.shape[0]} landmarks, the model predicts '
                       f'{predictor.num_landmarks}')
    predictions = predict_labelled(predictor, images, progress)
    if signals is None:
        signals = DEFAULT_SIGNALS if set(DEFAULT_SIGNALS) <= set(predictions.signals) else sorted(predictions.signals)
    missing = [name for name in signals if name not in predictions.signals]
    if missing:
        fail(checkpoint_file, f'the model does not give the signals {missing} (it gives '
                              f'{sorted(predictions.signals)})')
    try:
        calibration = fit_calibration(predictions.errors_mm, predictions.error_vectors_mm, predictions.signals,
                                      fit_split(len(images)), signals, coverage,
                                      source=f'{Path(ann_file).name}: {len(images)} images')
    except ValueError as err:
        fail(ann_file, str(err))
    calibration.checkpoint_sha256 = file_sha256(checkpoint_file)
    calibration.save(out)
    logger.info('wrote %s: %d images, radius = %.2f x typical error for %.0f %% coverage', out, len(images),
                calibration.quantile, 100 * coverage)
    return out, calibration


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Calibrate a trained model\'s predicted error per landmark on labelled images it did not train '
                    'on (e.g. step 2\'s valid.json), and write <weights>.calibration.json beside the weights, which '
                    'step 5 uses for its predicted errors, review flags and measurement intervals.')
    parser.add_argument('--config_file', type=Path, required=True, help='MMPose config the model was trained with')
    parser.add_argument('--load_weight_path', type=Path, required=True, help='checkpoint (.pth) from step 3')
    parser.add_argument('--ann_file', type=Path, required=True,
                        help='a step 2 annotation file (COCO JSON with spacing; images in images/ beside it) of '
                             'images the model did not train on, e.g. DIR/valid.json')
    parser.add_argument('--coverage', type=float, default=DEFAULT_COVERAGE,
                        help='probability that a landmark lies within its predicted error (default: %(default)s)')
    parser.add_argument('--signals', nargs='+', default=None, choices=sorted(SIGNAL_OFFSETS),
                        help=f'signals the predicted error is fitted on (default: {" ".join(DEFAULT_SIGNALS)} for a '
                             'cascade, the heatmap peaks for a plain heatmap model)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N (default: auto)')
    parser.add_argument('--engine', default='auto',
                        help='auto, pytorch, onnxruntime or onnxruntime-int8, as in step 5 (default: auto)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing calibration of the weights')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    out, calibration = calibrate(args.config_file, args.load_weight_path, args.ann_file, coverage=args.coverage,
                                 signals=args.signals, device=args.device, engine=args.engine,
                                 overwrite=args.overwrite)
    print(f'wrote {out}: {calibration.images["fit"] + calibration.images["conformal"]} images; the '
          f'{calibration.coverage:.0%} radius is {calibration.quantile:.2f} x each point\'s typical error')
    return 0


if __name__ == '__main__':
    run_cli(main)
