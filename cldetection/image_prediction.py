"""Step 5 on a person's own radiographs: images and DICOM in; landmarks, predicted errors, measurements and a report out.

    python step5_predict_expected_output.py --config_file CONFIG --load_weight_path WEIGHTS.pth \
        --images ceph1.dcm scans/ --output-dir out/ [--spacing MM] [--review-threshold 2]

For every image (:func:`cldetection.image_io.find_images`: files, or folders searched recursively) it writes

* ``<stem>.csv``: one row per landmark, ``landmark,name,x_px,y_px,x_mm,y_mm,predicted_error_mm,review``, in the
  image's own pixels (x right, y down, from the centre of the top-left pixel); mm = pixels x spacing;
* ``<stem>.json``: the same, the reasons for review, and the measurements with intervals;
* ``<stem>_overlay.png``: landmarks coloured by predicted error, review points ringed, the analysis lines;

and for the run ``measurements.csv`` (one row per image) and ``report.html`` (:mod:`cldetection.report`).

**Predicted error** is the radius (mm) that holds the true point with the calibration's coverage (90 %), from the
checkpoint's calibration (``WEIGHTS.pth.calibration.json``, :mod:`cldetection.calibrate`); without one, or
without a known pixel spacing, it is left empty with a warning. **review** is 1 for a point whose predicted error
exceeds ``--review-threshold`` and always for one outside the image. **Spacing** comes from the DICOM header,
else ``--spacing``; with neither, every millimetre output is left empty (never an assumed 0.1 mm).

A file that cannot be read or predicted is reported in one line and skipped; the others are processed, and the run
ends non-zero listing the failures. Outputs are claimed before any prediction (an existing one is replaced only
with ``--overwrite``) and each is written atomically, so a failed image leaves no file of its own behind.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from .analysis import MEASUREMENT_NAMES, NUM_ANALYSIS_LANDMARKS
from .confidence import ErrorCalibration, calibration_path, landmark_signals, review_flags
from .errors import InputError, check_output_file, claim_output, fail, releasing_claims
from .landmarks import landmark_names
from .measurement_intervals import measurement_intervals

logger = logging.getLogger(__name__)

DEFAULT_REVIEW_THRESHOLD_MM = 2.0
LANDMARK_COLUMNS = ('landmark', 'name', 'x_px', 'y_px', 'x_mm', 'y_mm', 'predicted_error_mm', 'review')
MEASUREMENTS_CSV = 'measurements.csv'
IMAGE_OUTPUTS = ('.csv', '.json', '_overlay.png')  #: each image's outputs: ``<stem><suffix>``
REPORT_HTML = 'report.html'


def output_stems(paths: Sequence[Path]) -> list[str]:
    """One output name per image: its stem, with ``-2``, ``-3``, ... for stems met before (``a/x.png``,
    ``b/x.dcm``), so no image's outputs overwrite another's."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = path.stem or path.name
        count = seen.get(stem.lower(), 0) + 1
        seen[stem.lower()] = count
        stems.append(stem if count == 1 else f'{stem}-{count}')
    return stems


def _number(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def image_result(path: Path, stem: str, width: int, height: int, spacing_mm: Optional[float], spacing_source: str,
                 points: np.ndarray, radius_mm: Optional[np.ndarray], flags: np.ndarray, reasons: list[str],
                 intervals: dict, calibration: Optional[ErrorCalibration], calibration_file: Optional[Path],
                 threshold_mm: float) -> dict[str, Any]:
    """One image's result, as ``<stem>.json`` holds it and :mod:`cldetection.report` draws it."""
    names = landmark_names(len(points))
    landmarks = []
    for k, (x, y) in enumerate(points):
        mm = (lambda v: _number(v * spacing_mm, 3)) if spacing_mm else (lambda v: None)
        landmarks.append({'landmark': k + 1, 'name': names[k], 'x_px': _number(x, 2), 'y_px': _number(y, 2),
                          'x_mm': mm(x), 'y_mm': mm(y),
                          'predicted_error_mm': None if radius_mm is None else _number(radius_mm[k], 2),
                          'review': bool(flags[k]), 'review_reason': reasons[k]})
    measurements = []
    for name, interval in intervals.items():
        m = interval.measurement
        digits = 3 if m.unit == 'ratio' else 2
        measurements.append({'name': name, 'unit': m.unit, 'value': _number(m.value, digits),
                             'low': _number(interval.low, digits), 'high': _number(interval.high, digits),
                             'class': m.class_number, 'class_name': m.class_name,
                             'p_class_wrong': _number(interval.p_class_wrong, 3), 'note': m.reason})
    return {'image': str(path), 'stem': stem, 'width': int(width), 'height': int(height),
            'spacing_mm': spacing_mm, 'spacing_source': spacing_source,
            'coverage': calibration.coverage if calibration is not None else None,
            'review_threshold_mm': threshold_mm,
            'calibration': str(calibration_file) if calibration is not None else None,
            'landmarks': landmarks, 'measurements': measurements}


def landmark_rows(result: dict) -> list[dict]:
    """``<stem>.csv``'s rows: :data:`LANDMARK_COLUMNS` of every landmark (empty cells for unknown values)."""
    return [{column: ('' if point[column] is None else int(point[column]) if column == 'review' else point[column])
             for column in LANDMARK_COLUMNS} for point in result['landmarks']]


def measurement_csv_row(result: dict) -> dict:
    """``measurements.csv``'s row of one image: value, interval, class and class-flip probability per measurement."""
    row: dict = {'image': result['image']}
    by_name = {m['name']: m for m in result['measurements']}
    for name in MEASUREMENT_NAMES:
        m = by_name.get(name, {})
        for key, column in (('value', name), ('low', f'{name}_low'), ('high', f'{name}_high'),
                            ('class', f'{name}_class'), ('p_class_wrong', f'{name}_p_class_wrong')):
            value = m.get(key)
            row[column] = '' if value is None else value
    row['review_points'] = ' '.join(str(p['landmark']) for p in result['landmarks'] if p['review'])
    row['note'] = '; '.join(f'{m["name"]}: {m["note"]}' for m in result['measurements'] if m['note'])
    return row


@dataclass
class ImagesRun:
    """What a run of :func:`predict_image_files` did."""
    results: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  #: one line per image that failed
    seconds_per_image: float = math.nan  #: reading + prediction + predicted errors + measurements
    output_seconds_per_image: float = math.nan  #: the image's CSV, JSON and overlay
    report_seconds: float = math.nan  #: measurements.csv and report.html, the overlays' embedding included


def load_calibration(checkpoint_file: Path, calibration_file: Optional[Path], num_landmarks: int
                     ) -> tuple[Optional[ErrorCalibration], Optional[Path]]:
    """The checkpoint's calibration (``calibration_file``, else the one beside the checkpoint), or ``None`` with a
    warning when there is none."""
    path = calibration_file or calibration_path(checkpoint_file)
    if calibration_file is None and not path.is_file():
        logger.warning('no calibration beside %s (%s): predicted errors are left empty and only points outside '
                       'the image are flagged for review; make one with python -m cldetection.calibrate',
                       checkpoint_file.name, path.name)
        return None, None
    if not path.is_file():
        fail(path, 'calibration file not found')
    return ErrorCalibration.load(path, checkpoint_file, num_landmarks), path


@releasing_claims()
def predict_image_files(config_file: str | Path, checkpoint_file: str | Path, inputs: Sequence[str | Path],
                        output_dir: str | Path, *, spacing_mm: Optional[float] = None, device: str = 'auto',
                        engine: str = 'auto', review_threshold_mm: float = DEFAULT_REVIEW_THRESHOLD_MM,
                        calibration_file: Optional[str | Path] = None, overwrite: bool = False,
                        progress: bool = True) -> ImagesRun:
    """Predict every image of ``inputs`` and write the outputs listed in the module's docstring to ``output_dir``."""
    from .image_io import find_images, read_radiograph
    from .metric import write_csv
    from .predict import LandmarkPredictor
    from .report import draw_review_overlay, embed_jpeg, write_report

    if spacing_mm is not None and not (math.isfinite(spacing_mm) and spacing_mm > 0):
        fail(None, f'--spacing must be a number > 0 (mm per pixel), got {spacing_mm}')
    if not (math.isfinite(review_threshold_mm) and review_threshold_mm > 0):
        fail(None, f'--review-threshold must be a number > 0 (mm), got {review_threshold_mm}')
    output_dir, checkpoint_file = Path(output_dir), Path(checkpoint_file)
    paths = find_images(inputs)
    stems = output_stems(paths)
    # every output checked before the (long) prediction: an existing one stops the run here, with nothing written;
    # the run's own two are claimed now, each image's when it is written (a claim holds a file open)
    outputs = [{suffix: check_output_file(output_dir / f'{stem}{suffix}', overwrite) for suffix in IMAGE_OUTPUTS}
               for stem in stems]
    run_claims = {name: claim_output(output_dir / name, overwrite) for name in (MEASUREMENTS_CSV, REPORT_HTML)}
    predictor = LandmarkPredictor(config_file, checkpoint_file, device=device, engine=engine)
    calibration, calibration_file = load_calibration(checkpoint_file, calibration_file and Path(calibration_file),
                                                     predictor.num_landmarks)
    run, overlays = ImagesRun(), []
    predict_seconds = output_seconds = report_seconds = 0.0
    for path, stem, image_outputs in tqdm(list(zip(paths, stems, outputs)), desc='predict', unit='image',
                                          disable=not progress):
        started = time.perf_counter()
        try:
            radiograph = read_radiograph(path, spacing_mm)
            result = _predict_one(predictor, radiograph, stem, calibration, calibration_file, review_threshold_mm)
            predict_seconds += time.perf_counter() - started
            started = time.perf_counter()
            overlay = draw_review_overlay(radiograph.image, result)
            with releasing_claims():  # a failed write removes this image's placeholders: nothing half-done is left
                _write_image_outputs(result, overlay, {suffix: claim_output(out, overwrite)
                                                       for suffix, out in image_outputs.items()})
            output_seconds += time.perf_counter() - started
        except InputError as err:
            run.failures.append(str(err))
            logger.error('%s', err)
            continue
        run.results.append(result)
        started = time.perf_counter()
        overlays.append(embed_jpeg(overlay))  # what the report embeds, ~200 kB, not the ~14 MB overlay
        report_seconds += time.perf_counter() - started
    done = max(len(run.results), 1)
    run.seconds_per_image, run.output_seconds_per_image = predict_seconds / done, output_seconds / done
    started = time.perf_counter()
    if run.results:
        write_csv([measurement_csv_row(r) for r in run.results], run_claims[MEASUREMENTS_CSV])
    write_report(run.results, overlays, run_claims[REPORT_HTML], failures=run.failures)
    run.report_seconds = report_seconds + time.perf_counter() - started  # the embedded overlays and the page
    logger.info('%d of %d images predicted in %.3f s each (+ %.3f s for their CSV, JSON and overlay; report %.2f s '
                'in all)', len(run.results), len(paths), run.seconds_per_image, run.output_seconds_per_image,
                run.report_seconds)
    return run


def _predict_one(predictor, radiograph, stem: str, calibration: Optional[ErrorCalibration],
                 calibration_file: Optional[Path], threshold_mm: float) -> dict:
    height, width = radiograph.image.shape[:2]
    fields = predictor.predict_with_signals([radiograph.image])[0]
    points = fields['keypoints']
    spacing = radiograph.spacing_mm
    typical = radius = None
    if spacing is None:
        logger.warning('%s: pixel spacing unknown (no DICOM spacing, no --spacing): millimetre outputs, predicted '
                       'errors and measurement intervals are left empty', radiograph.path)
    elif calibration is not None:
        typical = calibration.typical_error(landmark_signals(fields, spacing))
        radius = calibration.quantile * typical
    flags, reasons = review_flags(points, radius, width, height, threshold_mm)
    if flags.any():
        logger.info('%s: review landmarks %s', radiograph.path.name,
                    ', '.join(f'{k + 1} ({reasons[k]})' for k in np.flatnonzero(flags)))
    intervals = {}
    if len(points) >= NUM_ANALYSIS_LANDMARKS:
        intervals = measurement_intervals(points, typical, calibration.residuals if calibration else [],
                                          spacing, calibration.coverage if calibration else 0.9)
    return image_result(radiograph.path, stem, width, height, spacing, radiograph.spacing_source, points, radius,
                        flags, reasons, intervals, calibration, calibration_file, threshold_mm)


def _write_image_outputs(result: dict, overlay: np.ndarray, claims: dict) -> None:
    from .challenge_io import atomic_output, write_json_atomic
    from .metric import write_csv

    write_csv(landmark_rows(result), claims['.csv'])
    write_json_atomic(result, claims['.json'])
    with atomic_output(claims['_overlay.png'], suffix='.png') as tmp:
        # compression level 1: a radiograph-sized PNG in ~1/4 of the default level's time, ~20 % larger
        if not cv2.imwrite(str(tmp), overlay, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            fail(claims['_overlay.png'].path, 'cannot write the overlay PNG')


__all__ = ('DEFAULT_REVIEW_THRESHOLD_MM', 'ImagesRun', 'LANDMARK_COLUMNS', 'image_result', 'landmark_rows',
           'measurement_csv_row', 'output_stems', 'predict_image_files')
