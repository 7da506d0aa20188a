"""Predicted error per landmark: which signal predicts a landmark's real error, and how well the calibration holds.

    python -m benchmarks.confidence --config CONFIG --checkpoint RUN/best.pth --ann-file DATA/test.json \
        --label "cl2023 fold 1" [--ann-file DATA_SENIOR/test.json --label "ISBI Test1 senior" ...]

For each test set (a step 2 annotation file of images the model did not train on) it predicts every image with
its error signals (:mod:`cldetection.confidence`) and, as one more candidate, the spread of the local stage's
estimates on four patches shifted by a quarter patch (test-time shifts; four more local passes, so not in step 5),
then measures on the real errors:

* **each candidate signal**: Spearman's rho of the raw signal with the real error, pooled over points;
* **each calibration** (a set of signals): two-fold cross-calibration over the test images (calibrate on every other
  image, evaluate on the rest, and the other way round; each calibration split again into its fit and conformal
  images, as ``python -m cldetection.calibrate`` does), pooled: rho of the predicted error (the 90 % radius) with
  the real error, the coverage of that radius, the share of points flagged for review (radius > 2 mm or outside the
  image), SDR 2 mm of all points and of those not flagged, and of the 80 % of points with the smallest predicted
  error (selective prediction at 20 % flagged, whatever the threshold);
* **measurements** (19+ landmarks): coverage of the 90 % intervals, and the Brier score of the probability that a
  measurement's class differs from the ground truth's class, against the Brier score of a constant probability
  (the class-disagreement rate of the calibration images).

Writes the tables to a delimited section of ``benchmarks/RESULTS.md`` (rows of the same label are replaced).
"""
from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.stats import spearmanr

import cldetection  # noqa: F401
from cldetection.analysis import NUM_ANALYSIS_LANDMARKS, analyse_landmarks
from cldetection.calibrate import LabelledPredictions, fit_split, predict_labelled, read_labelled_images
from cldetection.confidence import DEFAULT_SIGNALS, fit_calibration
from cldetection.errors import run_cli
from cldetection.geometry import area_downscale, from_reduced, to_reduced
from cldetection.image_io import read_radiograph
from cldetection.measurement_intervals import measurement_intervals

from .results import format_row
from .run import git_commit

logger = logging.getLogger(__name__)

SECTION_START = '<!-- confidence: written by python -m benchmarks.confidence; edits are lost -->'
SECTION_END = '<!-- /confidence -->'
#: the calibrations compared: each a set of signals (the product's default first)
CANDIDATE_SETS = tuple(dict.fromkeys((
    DEFAULT_SIGNALS, ('disagreement_mm',), ('local_spread_mm',), ('local_score',), ('shift_spread_mm',),
    ('disagreement_mm', 'local_spread_mm'), ('local_score', 'local_spread_mm'),
    ('disagreement_mm', 'local_spread_mm', 'shift_spread_mm'),
    ('disagreement_mm', 'local_spread_mm', 'local_score', 'global_score'),
    ('local_score', 'local_spread_mm', 'shift_spread_mm'), ())))
SHIFT = 0.25  #: test-time shift of the candidate signal, in patch sides
REVIEW_MM, COVERAGE = 2.0, 0.9


def shift_spread(predictor, image_rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """RMS distance (image pixels) of the local stage's estimates on the patch at each point and four patches
    shifted by :data:`SHIFT` patch sides, from their mean: through the local stage's public methods."""
    import torch

    model = predictor.model
    sample = predictor.prepare(image_rgb)
    meta = sample['data_samples'].metainfo
    local, factor = model.local, int(meta['source_factor'])
    reduction = local.reduction(factor)
    scale, extent = factor * reduction, local.extent(factor)
    image = area_downscale(meta['source_img'], reduction)
    centers = to_reduced(points, scale)
    estimates = []
    for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        moved = centers + SHIFT * extent * np.array([dx, dy])
        patches, _ = local.cut(image, moved, extent)
        with torch.no_grad():
            estimate, _, _ = local.decode(local(local.normalise(patches)), moved, extent)
        estimates.append(np.where(np.isfinite(estimate), estimate, moved))
    estimates = from_reduced(np.stack(estimates), scale)
    return np.sqrt(((estimates - estimates.mean(axis=0)) ** 2).sum(axis=-1).mean(axis=0))


def collect(predictor, ann_file: Path, cache: Optional[Path] = None) -> LabelledPredictions:
    """Every test image's prediction and signals; with ``cache`` (``.npz``), read from it when it exists (the same
    checkpoint and images are the caller's to ensure), else written to it."""
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        signals = {key[len('signal_'):]: stored[key] for key in stored.files if key.startswith('signal_')}
        return LabelledPredictions(stored['points'], stored['truth'], stored['spacing_mm'], signals,
                                   list(stored['names']), stored['sizes'])
    images = read_labelled_images(ann_file)
    predictions = predict_labelled(predictor, images)
    spreads = [shift_spread(predictor, read_radiograph(image.path).image, points) * image.spacing_mm
               for image, points in zip(images, predictions.points)]
    predictions.signals['shift_spread_mm'] = np.stack(spreads)
    if cache is not None:
        np.savez(cache, points=predictions.points, truth=predictions.truth, spacing_mm=predictions.spacing_mm,
                 names=np.array(predictions.names), sizes=predictions.sizes,
                 **{f'signal_{name}': value for name, value in predictions.signals.items()})
    return predictions


@dataclass
class Evaluation:
    rho: float
    coverage: float
    flagged: float
    sdr2: float
    sdr2_unflagged: float
    radius_median: float
    sdr2_least_uncertain: float  #: SDR 2 mm of the 80 % of points with the smallest predicted error
    #: SDR 2 mm of the 80 % of points with the smallest *real* error: what a perfect ranking would reach at 20 %
    #: flagged, the ceiling of the selective-prediction target (all points' SDR 2 mm / 0.8 where that is < 100 %)
    sdr2_ceiling: float


def cross_calibrated(predictions: LabelledPredictions, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list]:
    """Each image's radii and typical errors from the calibration on the other half of the images."""
    count = len(predictions.points)
    halves = np.arange(count) % 2 == 0
    radius, typical = np.full(predictions.errors_mm.shape, np.nan), np.full(predictions.errors_mm.shape, np.nan)
    calibrations = []
    for evaluate in (halves, ~halves):
        calibrate = np.flatnonzero(~evaluate)
        signals = {n: v[calibrate] for n, v in predictions.signals.items()}
        calibration = fit_calibration(predictions.errors_mm[calibrate], predictions.error_vectors_mm[calibrate],
                                      signals, fit_split(len(calibrate)), names, COVERAGE)
        held = {n: v[evaluate] for n, v in predictions.signals.items()}
        typical[evaluate] = calibration.typical_error(held)
        radius[evaluate] = calibration.quantile * typical[evaluate]
        calibrations.append((evaluate, calibration))
    return radius, typical, calibrations


def evaluate(predictions: LabelledPredictions, names: Sequence[str]) -> Evaluation:
    radius, _, _ = cross_calibrated(predictions, names)
    errors = predictions.errors_mm
    labelled = np.isfinite(errors)
    points, size = predictions.points, predictions.sizes[:, None, :]
    inside = np.all(np.isfinite(points) & (points >= 0) & (points <= size - 1), axis=-1)
    flagged = (radius > REVIEW_MM) | ~inside
    e, r, f = errors[labelled], radius[labelled], flagged[labelled]
    kept = np.argsort(r, kind='stable')[:int(round(0.8 * len(r)))]  # the 20 % most uncertain flagged instead
    return Evaluation(float(spearmanr(r, e).statistic) if np.ptp(r) > 0 else math.nan, float(np.mean(e <= r)),
                      float(np.mean(f)), float(np.mean(e <= 2.0)),
                      float(np.mean(e[~f] <= 2.0)) if (~f).any() else math.nan, float(np.median(r)),
                      float(np.mean(e[kept] <= 2.0)), float(np.mean(np.sort(e)[:len(kept)] <= 2.0)))


def measurement_check(predictions: LabelledPredictions) -> Optional[dict]:
    """Interval coverage and class-flip Brier scores of the default calibration (19+ landmarks)."""
    if predictions.points.shape[1] < NUM_ANALYSIS_LANDMARKS:
        return None
    _, typical, calibrations = cross_calibrated(predictions, DEFAULT_SIGNALS)
    inside, total, p_wrong, wrong, base = 0, 0, [], [], []
    flips_by_half = {}
    for i, (points, truth, spacing) in enumerate(zip(predictions.points, predictions.truth, predictions.spacing_mm)):
        if not np.isfinite(truth[:NUM_ANALYSIS_LANDMARKS]).all():
            continue
        half = next(c for evaluate, c in calibrations if evaluate[i])
        intervals = measurement_intervals(points, typical[i], half.residuals, spacing, COVERAGE)
        reference = analyse_landmarks(truth, spacing)
        for name, interval in intervals.items():
            ref = reference[name]
            if ref.class_number is None or math.isnan(interval.p_class_wrong):
                continue
            total += 1
            inside += interval.low <= ref.value <= interval.high
            p_wrong.append(interval.p_class_wrong)
            wrong.append(float(interval.measurement.class_number != ref.class_number))
            flips_by_half.setdefault(id(half), []).append(wrong[-1])
            base.append(id(half))
    if not total:
        return None
    p_wrong, wrong = np.array(p_wrong), np.array(wrong)
    # the constant forecast: each half's images get the flip rate of the *other* half (what a calibration set shows)
    rates = {key: np.mean(values) for key, values in flips_by_half.items()}
    other = {key: next(v for k, v in rates.items() if k != key) if len(rates) > 1 else rates[key] for key in rates}
    constant = np.array([other[key] for key in base])
    return {'measurements': total, 'interval_coverage': inside / total, 'flip_rate': float(wrong.mean()),
            'brier': float(np.mean((p_wrong - wrong) ** 2)), 'brier_constant': float(np.mean((constant - wrong) ** 2))}


# ------------------------------------------------------------------------------------------ RESULTS.md
SIGNAL_COLUMNS = ('Test set', 'Images', 'Points', 'Signal', 'Spearman rho (raw signal)', 'Date', 'Commit')
CALIBRATION_COLUMNS = ('Test set', 'Signals', 'rho (predicted error)', 'Coverage of 90 % radius', 'Median radius mm',
                       'Flagged % (radius > 2 mm or off the image)', 'SDR 2 mm all %', 'SDR 2 mm unflagged %',
                       'SDR 2 mm of the 80 % least uncertain %',
                       'Ceiling: SDR 2 mm of the 80 % smallest real errors %',
                       'Date', 'Commit')
MEASUREMENT_COLUMNS = ('Test set', 'Measurements', 'Coverage of 90 % interval', 'Class flips %',
                       'Brier (predicted p)', 'Brier (constant rate)', 'Date', 'Commit')
SECTION_INTRO = (
    'Written by `python -m benchmarks.confidence` (see its docstring): the default config\'s checkpoint of each test '
    'set, predicted on test images it did not train on, two-fold cross-calibrated over those images (each calibration '
    'split again as `python -m cldetection.calibrate` splits its images: rows before a13cfb5 fit on half of them, '
    'later rows on two thirds). The Speed table comes from `python -m benchmarks.review_speed`. Targets (issue 41): '
    'rho >= 0.5; coverage 88-92 %; with <= 20 % of points flagged, SDR 2 mm of unflagged points >= 90 % (ISBI '
    'senior) / >= 85 % (cl2023) -- the Ceiling column is what a perfect ranking of the points would reach; a Brier score of the class-flip probability below the constant rate\'s; step 5 with '
    'confidence <= 1.5 x the stack path; the report < 0.1 s per image.')


def _section_rows(lines: list[str], heading: str) -> list[dict[str, str]]:
    from .results import parse_table
    if heading not in lines:
        return []
    table = []
    for line in lines[lines.index(heading) + 1:]:
        if not line.startswith('|'):
            break
        table.append(line)
    return parse_table(table) if table else []


TABLE_COLUMNS = {'Signals': SIGNAL_COLUMNS, 'Calibrations': CALIBRATION_COLUMNS, 'Measurements': MEASUREMENT_COLUMNS,
                 'Speed': None}  # the section's tables in order (Speed: benchmarks.review_speed's columns)


def update_results(results_md: Path, tables: dict[str, tuple[Sequence[str], list[dict[str, str]]]],
                   key: str = 'Test set') -> Path:
    """Write ``tables`` into the section, replacing their rows of the same ``key`` and keeping the other tables."""
    from .results import read_lines, section_span, write_section

    lines = read_lines(results_md)
    span = section_span(lines, SECTION_START, SECTION_END, results_md)
    old = lines[span[0]:span[1]] if span is not None else []
    section = [SECTION_START, '## Predicted error per landmark (issue 41)', '', SECTION_INTRO]
    for heading in TABLE_COLUMNS:
        old_rows = _section_rows(old, f'### {heading}')
        if heading in tables:
            columns, rows = tables[heading]
            new_keys = {r.get(key) for r in rows}
            rows = [r for r in old_rows if r.get(key) not in new_keys] + rows
        elif old_rows:
            columns, rows = list(old_rows[0]), old_rows
        else:
            continue
        section += ['', f'### {heading}', format_row(columns), format_row(['---'] * len(columns)),
                    *(format_row([r.get(c, '') for c in columns]) for r in rows)]
    section.append(SECTION_END)
    return write_section(results_md, section, SECTION_START, SECTION_END, above='## Cascade ablation')


def main(argv: Optional[Sequence[str]] = None) -> int:
    from cldetection.predict import LandmarkPredictor

    parser = argparse.ArgumentParser(description='Measure the predicted error per landmark against the real error '
                                                 'on held-out test images, and write the RESULTS.md section.')
    parser.add_argument('--config', type=Path, required=True, help='the config the checkpoint was trained with')
    parser.add_argument('--checkpoint', type=Path, required=True, help='checkpoint (e.g. a benchmarks.run best.pth)')
    parser.add_argument('--ann-file', type=Path, action='append', required=True,
                        help='step 2 annotation file of test images (repeat for several ground truths)')
    parser.add_argument('--label', action='append', required=True, help='test set label, one per --ann-file')
    parser.add_argument('--results', type=Path, default=Path(__file__).with_name('RESULTS.md'))
    parser.add_argument('--no-results', action='store_true', help='print only')
    parser.add_argument('--engine', default='auto',
                        help='auto, pytorch, onnxruntime or onnxruntime-int8, as in step 5 (default: auto)')
    parser.add_argument('--cache', type=Path, action='append', default=None,
                        help='.npz per --ann-file: the predictions are read from it when it exists, else saved to it '
                             '(to compare calibrations again without predicting)')
    args = parser.parse_args(argv)
    if len(args.label) != len(args.ann_file) or (args.cache and len(args.cache) != len(args.ann_file)):
        parser.error('give one --label (and --cache, if any) per --ann-file')
    predictor = LandmarkPredictor(args.config, args.checkpoint, device='cpu', engine=args.engine)
    date, commit = __import__('datetime').date.today().isoformat(), git_commit()[:12]
    signal_rows, calibration_rows, measurement_rows = [], [], []
    for ann_file, label, cache in zip(args.ann_file, args.label, args.cache or [None] * len(args.ann_file)):
        predictions = collect(predictor, ann_file, cache)
        errors = predictions.errors_mm
        labelled = np.isfinite(errors)
        for name in sorted(predictions.signals):
            rho = spearmanr(predictions.signals[name][labelled], errors[labelled]).statistic
            signal_rows.append({'Test set': label, 'Images': str(len(errors)), 'Points': str(int(labelled.sum())),
                                'Signal': f'`{name}`', 'Spearman rho (raw signal)': f'{rho:.3f}', 'Date': date,
                                'Commit': commit})
        for names in CANDIDATE_SETS:
            result = evaluate(predictions, names)
            calibration_rows.append({
                'Test set': label, 'Signals': ', '.join(f'`{n}`' for n in names) or 'none (per-landmark constant)',
                'rho (predicted error)': f'{result.rho:.3f}', 'Coverage of 90 % radius': f'{100 * result.coverage:.1f}',
                'Median radius mm': f'{result.radius_median:.2f}',
                'Flagged % (radius > 2 mm or off the image)': f'{100 * result.flagged:.1f}',
                'SDR 2 mm all %': f'{100 * result.sdr2:.2f}', 'SDR 2 mm unflagged %': f'{100 * result.sdr2_unflagged:.2f}',
                'SDR 2 mm of the 80 % least uncertain %': f'{100 * result.sdr2_least_uncertain:.2f}',
                'Ceiling: SDR 2 mm of the 80 % smallest real errors %': f'{100 * result.sdr2_ceiling:.2f}',
                'Date': date, 'Commit': commit})
        check = measurement_check(predictions)
        if check is not None:
            measurement_rows.append({
                'Test set': label, 'Measurements': str(check['measurements']),
                'Coverage of 90 % interval': f'{100 * check["interval_coverage"]:.1f}',
                'Class flips %': f'{100 * check["flip_rate"]:.1f}', 'Brier (predicted p)': f'{check["brier"]:.3f}',
                'Brier (constant rate)': f'{check["brier_constant"]:.3f}', 'Date': date, 'Commit': commit})
    tables = {'Signals': (SIGNAL_COLUMNS, signal_rows), 'Calibrations': (CALIBRATION_COLUMNS, calibration_rows),
              'Measurements': (MEASUREMENT_COLUMNS, measurement_rows)}
    for heading, (columns, rows) in tables.items():
        print(f'\n{heading}\n' + '\n'.join([format_row(columns)] + [format_row([r[c] for c in columns]) for r in rows]))
    if not args.no_results:
        print(f'wrote {update_results(args.results, tables)}')
    return 0


if __name__ == '__main__':
    run_cli(main)
