"""Cephalometric analysis: the eight ISBI 2015 measurements and their classes, from landmarks 1-19.

Source of the definitions: Wang et al., "A benchmark for comparison of dental radiography analysis
algorithms", Medical Image Analysis 31 (2016), which defines the measurements ANB, SNB, SNA, ODI, APDI, FHI,
FMA, MW on the 19 ISBI landmarks with their classes, and the challenge's classification script (Python),
which computed the benchmark's classes from the annotated landmarks. We follow that script exactly -- vector
directions, which angles are signed and how, boundary inclusivity -- because the benchmark's class agreement
figures are defined by it. We worked from three public copies of the script (in GitHub projects that reuse it
for their own cephalometric tools); they agree with each other on every formula below, and their comments
restate the paper's definitions. Where the script departs from the clinical textbook, the script wins and
the departure is noted:

* **ANB** (degrees) = SNA - SNB, a *signed* difference (the paper's "angle L5-L2-L6" measured so that B
  anterior of A gives ANB < 0; an unsigned angle would call a severe Class III a Class II).
  C1 Class I 3.2-5.7, C2 Class II > 5.7, C3 Class III < 3.2.
* **SNB** (degrees) = angle S-N-B (L1-L2-L6). C1 normal mandible 74.6-78.7, C2 retrognathic < 74.6,
  C3 prognathic > 78.7.
* **SNA** (degrees) = angle S-N-A (L1-L2-L5). C1 normal maxilla 79.4-83.2, C2 prognathic > 83.2,
  C3 retrognathic < 79.4.
* **ODI** overbite depth indicator (degrees) = angle(Me->Go, B->A) + s * angle(Po->Or, PNS->ANS): the AB plane
  (L5-L6) to the mandibular plane (L8-L10), plus the palatal plane (L17-L18) to Frankfort horizontal (L4-L3),
  where s = -1 if cross(Po->Or, PNS->ANS) < 0, i.e. the palatal plane is signed: positive when ANS tips down
  relative to FH (in image coordinates, y down). C1 normal 68.4-80.5, C2 deep bite tendency > 80.5,
  C3 open bite tendency < 68.4.
* **APDI** anteroposterior dysplasia indicator (degrees) = angle(Or->Po, N->Pog) + t * angle(N->Pog, A->B)
  + s * angle(Po->Or, PNS->ANS): FH (L3-L4) to the facial plane (L2-L7), the facial plane to the AB plane
  (L5-L6), and FH to the palatal plane (L17-L18); t = -1 if cross(N->Pog, A->B) > 0 (B behind A: Class II
  direction), s as in ODI. C1 normal 77.6-85.2, C2 Class II tendency < 77.6, C3 Class III tendency > 85.2.
* **FHI** facial height index (ratio) = |S-Go| / |N-Me| (L1-L10 over L2-L8), posterior over anterior face
  height. C1 normal 0.65-0.75, C2 short face tendency > 0.75, C3 long face tendency < 0.65.
* **FMA** (degrees) = angle(S->N, Go->Gn) (L1->L2 and L10->L9). The paper and the script both define the
  benchmark's "FMA" this way -- the SN plane to the Go-Gn mandibular plane, not the textbook Frankfort (Po-Or)
  to Go-Me angle. C1 normal 26.8-31.4, C2 mandible high angle tendency > 31.4, C3 low angle tendency < 26.8.
* **MW** modified Wits appraisal (mm) = |L12 - L11| x spacing, negative when x(L12) < x(L11) (upper incisal
  incision behind the lower one). C1 normal 2-4.5, C2 edge to edge = 0, C3 anterior cross bite < 0,
  C4 large overjet > 4.5. The paper leaves 0 < MW < 2 unassigned; the script puts it in C3, and so do we
  (named "anterior cross bite (< 2 mm, not 0)").

Every "normal" range includes its end points (the script tests ``value < low`` and ``value > high``).

Conventions. Coordinates are image pixels (x right, y down) of a lateral cephalogram with the profile facing
right, as in ISBI 2015 and CL-Detection 2023; the signs of ODI, APDI and MW depend on it, so a profile facing
left (nasion left of sella) gives NaN for those three with the reason, never a mirrored class. The script
truncated the annotators' integer coordinates with ``int()``; we use the coordinates as given (predictions
are sub-pixel), so values differ from the script's by at most the effect of a sub-pixel shift. Distances
are in mm via the image's spacing (mm per pixel; the script hard-coded 0.1). Angles between vectors are
``acos`` of the normalised dot product, in [0, 180] degrees.

Bad input: an array that is not ``K x 2`` with K >= 19 is an :class:`~cldetection.errors.InputError`. A
landmark that is NaN, infinite or marked invisible, and geometry where a needed vector has zero length,
make the measurements that use it NaN with a ``reason``; their class is ``None`` (never a guess).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from .errors import fail
from .landmarks import ISBI2015_LANDMARK_NAMES

NUM_ANALYSIS_LANDMARKS = 19
#: 1-based landmark numbers of the ISBI 2015 definitions.
S, N, OR, PO, A, B, POG, ME, GN, GO, LOWER_INCISOR, UPPER_INCISOR = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
PNS, ANS = 17, 18


@dataclass(frozen=True)
class MeasurementDefinition:
    """One measurement of the benchmark: its unit, the landmarks it uses, its normal range and classes."""
    name: str
    unit: str  #: 'deg', 'mm' or 'ratio'
    landmarks: tuple[int, ...]
    description: str
    low: float  #: lower end of the normal range (inclusive)
    high: float  #: upper end of the normal range (inclusive)
    classes: Mapping[int, str]  #: class number -> meaning; 1 is normal
    below: int  #: class of a value < low
    above: int  #: class of a value > high

    def classify(self, value: float) -> Optional[int]:
        """The class number of ``value``, ``None`` for NaN (not measurable)."""
        if not math.isfinite(value):
            return None
        if self.name == 'MW':
            # the challenge script: [2, 4.5] normal, > 4.5 large overjet, exactly 0 edge to edge, else cross bite
            if value >= self.low:
                return 1 if value <= self.high else 4
            return 2 if value == 0 else 3
        if value < self.low:
            return self.below
        if value > self.high:
            return self.above
        return 1


MEASUREMENTS: tuple[MeasurementDefinition, ...] = (
    MeasurementDefinition('ANB', 'deg', (S, N, A, B), 'SNA - SNB (signed)', 3.2, 5.7,
                          {1: 'Class I', 2: 'Class II', 3: 'Class III'}, below=3, above=2),
    MeasurementDefinition('SNB', 'deg', (S, N, B), 'angle sella-nasion-B', 74.6, 78.7,
                          {1: 'normal mandible', 2: 'retrognathic mandible', 3: 'prognathic mandible'},
                          below=2, above=3),
    MeasurementDefinition('SNA', 'deg', (S, N, A), 'angle sella-nasion-A', 79.4, 83.2,
                          {1: 'normal maxilla', 2: 'prognathic maxilla', 3: 'retrognathic maxilla'},
                          below=3, above=2),
    MeasurementDefinition('ODI', 'deg', (A, B, ME, GO, OR, PO, PNS, ANS),
                          'AB plane to mandibular plane + palatal plane to FH (signed)', 68.4, 80.5,
                          {1: 'normal', 2: 'deep bite tendency', 3: 'open bite tendency'}, below=3, above=2),
    MeasurementDefinition('APDI', 'deg', (N, POG, A, B, OR, PO, PNS, ANS),
                          'FH to facial plane + facial plane to AB plane + FH to palatal plane (signed)',
                          77.6, 85.2, {1: 'normal', 2: 'Class II tendency', 3: 'Class III tendency'},
                          below=2, above=3),
    MeasurementDefinition('FHI', 'ratio', (S, GO, N, ME), 'S-Go / N-Me', 0.65, 0.75,
                          {1: 'normal', 2: 'short face tendency', 3: 'long face tendency'}, below=3, above=2),
    MeasurementDefinition('FMA', 'deg', (S, N, GO, GN), 'SN plane to Go-Gn', 26.8, 31.4,
                          {1: 'normal', 2: 'mandible high angle tendency', 3: 'mandible low angle tendency'},
                          below=3, above=2),
    MeasurementDefinition('MW', 'mm', (LOWER_INCISOR, UPPER_INCISOR),
                          'incisal incisions L11-L12 distance, negative if L12 behind L11', 2.0, 4.5,
                          {1: 'normal', 2: 'edge to edge', 3: 'anterior cross bite (< 2 mm, not 0)',
                           4: 'large overjet'}, below=3, above=4),
)
MEASUREMENT_NAMES: tuple[str, ...] = tuple(m.name for m in MEASUREMENTS)
DEFINITIONS: dict[str, MeasurementDefinition] = {m.name: m for m in MEASUREMENTS}
#: measurements whose sign depends on the profile facing right
_ORIENTED = ('ODI', 'APDI', 'MW')


@dataclass(frozen=True)
class Measurement:
    """A measured value (NaN when not measurable, with the ``reason``) and its class."""
    name: str
    value: float
    unit: str
    class_number: Optional[int]
    reason: str = ''

    @property
    def class_name(self) -> str:
        return '' if self.class_number is None else DEFINITIONS[self.name].classes[self.class_number]


class _Degenerate(Exception):
    """A needed vector has zero length: the measurement is undefined (NaN with this reason)."""


def _vector(points: np.ndarray, start: int, end: int) -> np.ndarray:
    vector = points[end - 1] - points[start - 1]
    if not np.any(vector):
        raise _Degenerate(f'landmarks {start} and {end} coincide')
    return vector


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    """Unsigned angle between two vectors, degrees in [0, 180]."""
    cosine = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))


def _cross(u: np.ndarray, v: np.ndarray) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def _palatal_to_fh(p: np.ndarray) -> float:
    """FH (Po->Or) to the palatal plane (PNS->ANS), negative when cross < 0 (ANS tipped up, y down)."""
    fh, palatal = _vector(p, PO, OR), _vector(p, PNS, ANS)
    angle = _angle(fh, palatal)
    return -angle if _cross(fh, palatal) < 0 else angle


def _sna(p: np.ndarray) -> float:
    return _angle(_vector(p, N, S), _vector(p, N, A))


def _snb(p: np.ndarray) -> float:
    return _angle(_vector(p, N, S), _vector(p, N, B))


def _odi(p: np.ndarray) -> float:
    return _angle(_vector(p, ME, GO), _vector(p, B, A)) + _palatal_to_fh(p)


def _apdi(p: np.ndarray) -> float:
    facial = _vector(p, N, POG)
    ab = _vector(p, A, B)
    facial_to_ab = _angle(facial, ab)
    if _cross(facial, ab) > 0:
        facial_to_ab = -facial_to_ab
    return _angle(_vector(p, OR, PO), facial) + facial_to_ab + _palatal_to_fh(p)


def _fhi(p: np.ndarray) -> float:
    posterior = float(np.linalg.norm(p[GO - 1] - p[S - 1]))
    anterior = float(np.linalg.norm(_vector(p, N, ME)))
    return posterior / anterior


def _fma(p: np.ndarray) -> float:
    return _angle(_vector(p, S, N), _vector(p, GO, GN))


def _mw(p: np.ndarray, spacing: float) -> float:
    lower, upper = p[LOWER_INCISOR - 1], p[UPPER_INCISOR - 1]
    distance = float(np.linalg.norm(upper - lower)) * spacing
    return -distance if upper[0] < lower[0] else distance


_FORMULAS: dict[str, Callable[[np.ndarray, float], float]] = {
    'ANB': lambda p, s: _sna(p) - _snb(p), 'SNB': lambda p, s: _snb(p), 'SNA': lambda p, s: _sna(p),
    'ODI': lambda p, s: _odi(p), 'APDI': lambda p, s: _apdi(p), 'FHI': lambda p, s: _fhi(p),
    'FMA': lambda p, s: _fma(p), 'MW': _mw,
}


def _landmark_label(k: int) -> str:
    return f'{k} ({ISBI2015_LANDMARK_NAMES[k - 1]})'


def analyse_landmarks(landmarks: np.ndarray, spacing: float = 0.1, visible: Optional[np.ndarray] = None,
                      source: str | Path | None = None) -> dict[str, Measurement]:
    """The eight measurements of one image from its landmarks (``K x 2`` pixels, K >= 19; 1-19 are used).

    Args:
        landmarks: ``(x, y)`` image pixels, ISBI order (CL-Detection 2023's first 19 landmarks).
        spacing: mm per pixel (only MW is a length).
        visible: optional ``K`` flags; a landmark flagged 0 counts as missing.
        source: named in the error message of bad input.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < NUM_ANALYSIS_LANDMARKS:
        fail(source, f'cephalometric analysis needs landmarks as K x 2 with K >= {NUM_ANALYSIS_LANDMARKS}, '
                     f'got shape {points.shape}')
    try:
        spacing = float(spacing)
    except (TypeError, ValueError):
        fail(source, f'pixel spacing must be a number > 0 (mm), got {spacing!r}')
    if not (math.isfinite(spacing) and spacing > 0):
        fail(source, f'pixel spacing must be a number > 0 (mm), got {spacing!r}')
    points = points[:NUM_ANALYSIS_LANDMARKS]
    missing = ~np.isfinite(points).all(axis=1)
    if visible is not None:
        missing |= ~(np.asarray(visible).reshape(-1)[:NUM_ANALYSIS_LANDMARKS] > 0)
    faces_left = not missing[S - 1] and not missing[N - 1] and points[N - 1, 0] < points[S - 1, 0]

    results = {}
    for definition in MEASUREMENTS:
        lacking = [k for k in definition.landmarks if missing[k - 1]]
        reason = ''
        if lacking:
            reason = f'landmark {", ".join(_landmark_label(k) for k in lacking)} missing'
        elif faces_left and definition.name in _ORIENTED:
            reason = 'profile faces left (nasion left of sella); the sign convention needs it facing right'
        value = math.nan
        if not reason:
            try:
                value = float(_FORMULAS[definition.name](points, spacing))
            except _Degenerate as err:
                reason = str(err)
            if not reason and not math.isfinite(value):
                reason = 'degenerate geometry'
                value = math.nan
        results[definition.name] = Measurement(definition.name, value, definition.unit,
                                               definition.classify(value), reason)
    return results


# ------------------------------------------------------------------------------------------- agreement
def class_agreement(predicted: Sequence[Mapping[str, Measurement]],
                    reference: Sequence[Mapping[str, Measurement]]) -> dict[str, tuple[int, int]]:
    """Per measurement, ``(images whose predicted class equals the reference class, images compared)``.

    Images where the reference is not measurable are left out; a prediction that is not measurable where the
    reference is counts as a disagreement (the model failed there).
    """
    if len(predicted) != len(reference):
        raise ValueError(f'{len(predicted)} predicted images, {len(reference)} reference images')
    counts = {}
    for name in MEASUREMENT_NAMES:
        pairs = [(p[name].class_number, r[name].class_number) for p, r in zip(predicted, reference)
                 if r[name].class_number is not None]
        counts[name] = (sum(p == r for p, r in pairs), len(pairs))
    return counts


def agreement_percent(counts: Mapping[str, tuple[int, int]]) -> dict[str, float]:
    """``class_agreement`` counts as percentages (NaN where nothing was compared)."""
    return {name: 100.0 * agree / total if total else math.nan for name, (agree, total) in counts.items()}


def format_agreement(counts: Mapping[str, tuple[int, int]], title: str = 'class agreement') -> str:
    """A two-line text table: measurement names, then ``agreement % (agree/total)``."""
    percent = agreement_percent(counts)
    head = [title] + list(counts)
    values = [''] + [f'{percent[n]:.1f} % ({a}/{t})' for n, (a, t) in counts.items()]
    widths = [max(len(h), len(v)) for h, v in zip(head, values)]
    return '\n'.join(' | '.join(c.ljust(w) for c, w in zip(row, widths)) for row in (head, values))


# -------------------------------------------------------------------------------------------- CSV rows
def _value_cell(measurement: Measurement) -> str | float:
    return '' if not math.isfinite(measurement.value) else round(measurement.value, 4)


def _class_cell(measurement: Measurement) -> str | int:
    return '' if measurement.class_number is None else measurement.class_number


def _reasons(results: Mapping[str, Measurement], prefix: str = '') -> list[str]:
    return [f'{prefix}{m.name}: {m.reason}' for m in results.values() if m.reason]


def measurement_row(image: str | int, results: Mapping[str, Measurement], key: str = 'image') -> dict:
    """One CSV row of one image's measurements: ``<M>``, ``<M>_class`` per measurement, and a ``note``."""
    row: dict = {key: image}
    for name in MEASUREMENT_NAMES:
        row[name] = _value_cell(results[name])
        row[f'{name}_class'] = _class_cell(results[name])
    row['note'] = '; '.join(_reasons(results))
    return row


def comparison_row(image: str, predicted: Mapping[str, Measurement], ground_truth: Mapping[str, Measurement]) -> dict:
    """One CSV row comparing an image's predicted and ground-truth measurements and classes."""
    row: dict = {'image': image}
    for name in MEASUREMENT_NAMES:
        row[f'{name}_pred'] = _value_cell(predicted[name])
        row[f'{name}_gt'] = _value_cell(ground_truth[name])
        row[f'{name}_pred_class'] = _class_cell(predicted[name])
        row[f'{name}_gt_class'] = _class_cell(ground_truth[name])
    row['note'] = '; '.join(_reasons(predicted, 'pred ') + _reasons(ground_truth, 'gt '))
    return row
