"""Predicted error per landmark, calibrated: which points of a prediction to trust, and how far.

A prediction carries raw signals of each landmark's error (:data:`cldetection.predict.SIGNAL_FIELDS`): where the
global stage put it before the local stage refined it, the local stage's heatmap spread and peak, the global
stage's peak, and for an ensemble the members' spread. None of them is an error in millimetres. This module turns
them into one: a **radius per landmark that holds the true point with a chosen probability** (90 % by default),
by split-conformal calibration on radiographs the model did not train on.

1. **A typical error per point.** ``log(error) ~ a_k + sum_j b_j * log(signal_j + c_j)``: an intercept per
   landmark (some landmarks are harder than others on every image) and one slope per signal shared by all
   landmarks (so a few dozen calibration images are enough), fitted by least squares on the *fit* part of the
   calibration images (two thirds of them). Which signals: :data:`DEFAULT_SIGNALS`, chosen by measurement
   (``python -m benchmarks.confidence``; ``docs/explanation/confidence.md``).
2. **A conformal radius.** On the other, *conformal*, third the scores ``error / typical error`` of every point;
   their ``ceil((n + 1) * coverage) / n`` quantile ``q`` (split conformal with normalised scores, Lei et al.,
   JASA 2018, section 5.2) makes ``q * typical error`` a radius that holds the true point with probability at
   least ``coverage`` for a new image drawn like the calibration images (over images and points; not for every
   landmark on its own).
3. **Error vectors.** The conformal images' error vectors divided by their typical errors are kept, so that
   :mod:`cldetection.measurement_intervals` can draw plausible landmark positions from the real, heavy-tailed
   shape of the errors instead of assuming a Gaussian.

The calibration is stored beside the checkpoint, ``<weights>.calibration.json`` (:func:`calibration_path`),
written by ``python -m cldetection.calibrate`` and read by step 5; it names the checkpoint's SHA-256 and is
refused for any other checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .errors import fail

#: Signal -> the offset ``c`` added before its logarithm (mm for lengths, which are never below ~0.05 mm in effect);
#: a signal not listed (a study's, e.g. ``benchmarks.confidence``'s test-time shift spread) gets 0.1.
SIGNAL_OFFSETS = {'disagreement_mm': 0.1, 'local_spread_mm': 0.1, 'member_spread_mm': 0.1,
                  'global_score': 0.01, 'local_score': 0.01}
#: The signals a calibration uses unless told otherwise: the local stage's heatmap peak and spread at the point,
#: which ranked a cascade's errors best on held-out images (``benchmarks.confidence``; RESULTS.md, "Predicted error
#: per landmark"); the global-local disagreement, which seems the obvious signal, barely tracks the error (the local
#: stage corrects a large global error as well as a small one).
DEFAULT_SIGNALS = ('local_score', 'local_spread_mm')
DEFAULT_COVERAGE = 0.9
CALIBRATION_SUFFIX = '.calibration.json'
_FORMAT = 'cldetection error calibration 1'


def calibration_path(checkpoint: str | Path) -> Path:
    """Where the calibration of ``checkpoint`` is kept: ``<checkpoint>.calibration.json`` beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + CALIBRATION_SUFFIX)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def landmark_signals(fields: Mapping[str, np.ndarray], spacing_mm: float) -> dict[str, np.ndarray]:
    """The signals (``K`` each) of one prediction's fields (``keypoints`` and :data:`~cldetection.predict.
    SIGNAL_FIELDS`, image pixels): lengths in mm via ``spacing_mm``, scores as they are. A field the model does not
    give is left out."""
    points = np.asarray(fields['keypoints'], dtype=np.float64)
    signals = {}
    if 'coarse_keypoints' in fields:
        signals['disagreement_mm'] = np.linalg.norm(points - np.asarray(fields['coarse_keypoints']), axis=1) * spacing_mm
    for field, name in (('local_spread', 'local_spread_mm'), ('member_spread', 'member_spread_mm')):
        if field in fields:
            signals[name] = np.asarray(fields[field], dtype=np.float64) * spacing_mm
    for field, name in (('keypoint_scores', 'global_score'), ('local_scores', 'local_score')):
        if field in fields:
            signals[name] = np.asarray(fields[field], dtype=np.float64)
    return signals


def _features(signals: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """``... x J`` log-signals (non-finite values, e.g. a lost estimate, at the largest finite value seen)."""
    columns = []
    for name in names:
        values = np.asarray(signals[name], dtype=np.float64)
        finite = np.isfinite(values)
        values = np.where(finite, values, np.max(values[finite]) if finite.any() else 0.0)
        columns.append(np.log(np.clip(values, 0.0, None) + SIGNAL_OFFSETS.get(name, 0.1)))
    return np.stack(columns, axis=-1) if columns else np.zeros(np.shape(next(iter(signals.values()))) + (0,))


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal quantile: the ``ceil((n + 1) * coverage)``-th smallest of ``n`` scores (infinite when
    there are too few scores for the coverage asked)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    rank = math.ceil((len(scores) + 1) * coverage)
    return float(scores[rank - 1]) if rank <= len(scores) else math.inf


@dataclass
class ErrorCalibration:
    """A fitted model of each landmark's error and its conformal quantile (see the module's docstring)."""
    signals: tuple[str, ...]
    intercepts: list[float]  #: ``a_k``, one per landmark
    slopes: list[float]  #: ``b_j``, one per signal
    quantile: float  #: ``q``: the radius is ``q`` x the typical error
    coverage: float
    residuals: list[list[float]]  #: the conformal images' error vectors over their typical errors (``M x 2``)
    images: dict  #: {'fit': n, 'conformal': n}: the calibration images of each part
    checkpoint_sha256: str = ''
    source: str = ''  #: what it was calibrated on, in words

    @property
    def num_landmarks(self) -> int:
        return len(self.intercepts)

    def typical_error(self, signals: Mapping[str, np.ndarray]) -> np.ndarray:
        """The typical error (mm, ``... x K``) of points with these signals (each ``... x K``)."""
        missing = [name for name in self.signals if name not in signals]
        if missing:
            raise KeyError(f'the calibration needs the signals {missing}, which this model does not give')
        fit = np.asarray(self.intercepts) + _features(signals, self.signals) @ np.asarray(self.slopes)
        return np.exp(fit)

    def radius(self, signals: Mapping[str, np.ndarray]) -> np.ndarray:
        """The radius (mm, ``... x K``) that holds the true point with probability ``coverage``."""
        return self.quantile * self.typical_error(signals)

    def save(self, path: str | Path) -> Path:
        from .challenge_io import write_json_atomic
        return write_json_atomic({'format': _FORMAT, **asdict(self)}, path, indent=1)

    @classmethod
    def load(cls, path: str | Path, checkpoint: Optional[str | Path] = None,
             num_landmarks: Optional[int] = None) -> 'ErrorCalibration':
        """Read a calibration; with ``checkpoint``, refuse one made for other weights, with ``num_landmarks``, one
        for another landmark count."""
        from .challenge_io import read_json
        document = read_json(path)
        if not isinstance(document, dict) or document.pop('format', None) != _FORMAT:
            fail(path, f'not an error calibration (no "format": "{_FORMAT}")')
        try:
            calibration = cls(**{**document, 'signals': tuple(document['signals'])})
        except (TypeError, KeyError) as err:
            fail(path, f'malformed error calibration: {err}')
        if checkpoint is not None and calibration.checkpoint_sha256 != file_sha256(checkpoint):
            fail(path, f'was calibrated for other weights than {Path(checkpoint).name}; calibrate these with '
                       'python -m cldetection.calibrate')
        if num_landmarks is not None and calibration.num_landmarks != num_landmarks:
            fail(path, f'calibrates {calibration.num_landmarks} landmarks, the model predicts {num_landmarks}')
        return calibration


def fit_calibration(errors_mm: np.ndarray, error_vectors_mm: np.ndarray, signals: Mapping[str, np.ndarray],
                    fit_images: np.ndarray, names: Sequence[str] = DEFAULT_SIGNALS,
                    coverage: float = DEFAULT_COVERAGE, source: str = '') -> ErrorCalibration:
    """Calibrate on ``N`` images: their errors (``N x K`` mm; NaN where a landmark is not labelled), error vectors
    (``N x K x 2`` mm, prediction minus truth), signals (each ``N x K``) and which images fit the typical error
    (``fit_images``, ``N`` booleans; the others give the conformal quantile)."""
    errors_mm = np.asarray(errors_mm, dtype=np.float64)
    fit_images = np.asarray(fit_images, dtype=bool)
    num_images, num_landmarks = errors_mm.shape
    if not 0 < coverage < 1:
        raise ValueError(f'coverage must lie in (0, 1), got {coverage}')
    if fit_images.all() or not fit_images.any():
        raise ValueError('calibration needs images in both parts (fit and conformal)')
    labelled = np.isfinite(errors_mm)
    features = _features(signals, names)  # N x K x J
    # one-hot landmark intercepts beside the shared slopes
    onehot = np.broadcast_to(np.eye(num_landmarks), (num_images, num_landmarks, num_landmarks))
    design = np.concatenate([onehot, features], axis=-1)
    rows = labelled & fit_images[:, None]
    target = np.log(errors_mm + 0.05)
    coefficients, *_ = np.linalg.lstsq(design[rows], target[rows], rcond=None)
    # a landmark never labelled in the fit images gets the mean intercept
    seen = rows.any(axis=0)
    intercepts = np.where(seen, coefficients[:num_landmarks], coefficients[:num_landmarks][seen].mean())
    calibration = ErrorCalibration(tuple(names), intercepts.tolist(), coefficients[num_landmarks:].tolist(), 1.0,
                                   float(coverage), [], {'fit': int(fit_images.sum()),
                                                         'conformal': int((~fit_images).sum())}, source=source)
    typical = calibration.typical_error(signals)
    held = labelled & ~fit_images[:, None]
    calibration.quantile = conformal_quantile(errors_mm[held] / typical[held], coverage)
    if not math.isfinite(calibration.quantile):
        raise ValueError(f'{int(held.sum())} points in the conformal images are too few for {coverage:.0%} coverage')
    residuals = np.asarray(error_vectors_mm, dtype=np.float64)[held] / typical[held][:, None]
    calibration.residuals = np.round(residuals, 4).tolist()
    return calibration


def review_flags(points: np.ndarray, radius_mm: Optional[np.ndarray], width: int, height: int,
                 threshold_mm: float) -> tuple[np.ndarray, list[str]]:
    """Which points (``K x 2`` image pixels) a person should check, and why: outside the image or not found at all
    (always), or a calibrated radius over ``threshold_mm`` (when there is one)."""
    flags, reasons = [], []
    for k, (x, y) in enumerate(np.asarray(points, dtype=np.float64)):
        if not (math.isfinite(x) and math.isfinite(y)):
            reason = 'not found'
        elif not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            reason = 'outside the image'
        elif radius_mm is not None and radius_mm[k] > threshold_mm:
            reason = f'predicted error {radius_mm[k]:.1f} mm > {threshold_mm:g} mm'
        else:
            reason = ''
        flags.append(bool(reason))
        reasons.append(reason)
    return np.array(flags, dtype=bool), reasons


__all__ = ('CALIBRATION_SUFFIX', 'DEFAULT_COVERAGE', 'DEFAULT_SIGNALS', 'ErrorCalibration', 'calibration_path',
           'conformal_quantile', 'file_sha256', 'fit_calibration', 'landmark_signals', 'review_flags')
