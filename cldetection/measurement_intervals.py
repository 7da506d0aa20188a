"""Measurements with intervals: how far each cephalometric measurement and its class can be trusted.

An angle between landmarks that may each be a millimetre off is uncertain by an amount that depends on how far
apart the landmarks are and which way they may be off; a measurement near a class boundary may change class with
a small error. Both follow from the landmarks' calibrated errors (:mod:`cldetection.confidence`) by sampling:
draw ``draws`` plausible sets of landmark positions, each point moved by its typical error times an error vector
drawn from the calibration's own (normalised, heavy-tailed) error vectors, measure each set with
:func:`cldetection.analysis.analyse_landmarks`, and read off

* the **interval**: the central ``coverage`` share of the sampled values (e.g. the 5th to 95th percentile), and
* the **probability that the class is wrong**: the share of draws whose class differs from the class of the
  measurement of the predicted landmarks.

The landmarks' errors are drawn independently of each other; real errors of neighbouring landmarks are somewhat
correlated, which this ignores (``python -m benchmarks.confidence`` measures how well the intervals and the class
probabilities hold on test images).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .analysis import MEASUREMENT_NAMES, NUM_ANALYSIS_LANDMARKS, Measurement, analyse_landmarks

#: Sampled landmark sets per image: 400 give a class-flip probability within about +-0.025 (one standard error at
#: p = 0.5) at ~0.05 s per image.
DEFAULT_DRAWS = 400


@dataclass(frozen=True)
class MeasurementInterval:
    """A measurement of the predicted landmarks with its interval and the probability its class is wrong."""
    measurement: Measurement
    low: float
    high: float
    p_class_wrong: float  #: NaN when the measurement has no class (not measurable)


def measurement_intervals(points: np.ndarray, typical_error_mm: Optional[np.ndarray], residuals: np.ndarray,
                          spacing_mm: Optional[float], coverage: float = 0.9, draws: int = DEFAULT_DRAWS,
                          seed: int = 0) -> dict[str, MeasurementInterval]:
    """The measurements of ``points`` (``K x 2`` pixels, K >= 19) with intervals.

    Args:
        typical_error_mm: each landmark's typical error (:meth:`ErrorCalibration.typical_error`); ``None`` (no
            calibration) gives the measurements with NaN intervals and probabilities.
        residuals: the calibration's normalised error vectors (``M x 2``), the shape errors are drawn from.
        spacing_mm: mm per pixel; ``None`` (unknown) also gives NaN intervals, and MW itself NaN, as no length can
            be given in mm then.
        seed: the draws' random seed (the same image gives the same intervals on every run).
    """
    points = np.asarray(points, dtype=np.float64)[:NUM_ANALYSIS_LANDMARKS]
    measured = analyse_landmarks(points, spacing_mm or 1.0)
    if spacing_mm is None:
        measured['MW'] = Measurement('MW', math.nan, 'mm', None, 'pixel spacing unknown')
    if typical_error_mm is None or spacing_mm is None or len(residuals) == 0:
        return {name: MeasurementInterval(m, math.nan, math.nan, math.nan) for name, m in measured.items()}
    rng = np.random.default_rng(seed)
    residuals = np.asarray(residuals, dtype=np.float64)
    scale_px = np.asarray(typical_error_mm, dtype=np.float64)[:NUM_ANALYSIS_LANDMARKS] / spacing_mm
    picks = residuals[rng.integers(0, len(residuals), (draws, len(points)))]  # draws x 19 x 2
    samples = points + picks * scale_px[:, None]
    values = {name: np.empty(draws) for name in MEASUREMENT_NAMES}
    classes = {name: np.empty(draws, dtype=object) for name in MEASUREMENT_NAMES}
    for i, sample in enumerate(samples):
        for name, m in analyse_landmarks(sample, spacing_mm).items():
            values[name][i], classes[name][i] = m.value, m.class_number
    tail = (1.0 - coverage) / 2.0
    intervals = {}
    for name, m in measured.items():
        finite = values[name][np.isfinite(values[name])]
        if m.class_number is None or len(finite) == 0:
            intervals[name] = MeasurementInterval(m, math.nan, math.nan, math.nan)
            continue
        low, high = np.quantile(finite, [tail, 1.0 - tail])
        wrong = float(np.mean(classes[name] != m.class_number))
        intervals[name] = MeasurementInterval(m, float(low), float(high), wrong)
    return intervals


__all__ = ('DEFAULT_DRAWS', 'MeasurementInterval', 'measurement_intervals')
