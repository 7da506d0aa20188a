"""Cephalometric analysis (cldetection.analysis): hand-computed geometry, class cuts, bad input, agreement."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cldetection.analysis import (ANS, DEFINITIONS, GN, GO, LOWER_INCISOR, ME, MEASUREMENT_NAMES, OR, PNS, PO,
                                  POG, UPPER_INCISOR, A, B, Measurement, N, S, analyse_landmarks,
                                  agreement_percent, class_agreement, comparison_row, measurement_row)
from cldetection.errors import InputError


def polar(origin: tuple[float, float], degrees: float, length: float) -> tuple[float, float]:
    """``origin`` + ``length`` along the direction ``degrees`` (image axes: 0 = right, 90 = down)."""
    return (origin[0] + length * math.cos(math.radians(degrees)), origin[1] + length * math.sin(math.radians(degrees)))


def face(sna: float = 81.0, snb: float = 77.0) -> np.ndarray:
    """A right-facing profile (x right, y down) built so that every measurement is known by construction.

    S-N horizontal; A and B below N at angles ``sna`` / ``snb`` from N->S; FH (Po->Or) horizontal; palatal
    plane parallel to FH; facial plane N->Pog straight down; mandibular plane Me->Go at 180 + 5 degrees.
    """
    p = np.full((19, 2), np.nan)
    p[S - 1], p[N - 1] = (1000.0, 1000.0), (1700.0, 1000.0)
    p[A - 1] = polar((1700.0, 1000.0), 180.0 - sna, 500.0)
    p[B - 1] = polar((1700.0, 1000.0), 180.0 - snb, 900.0)
    p[PO - 1], p[OR - 1] = (700.0, 1200.0), (1600.0, 1200.0)
    p[PNS - 1], p[ANS - 1] = (1100.0, 1450.0), (1650.0, 1450.0)
    p[POG - 1] = (1700.0, 1950.0)
    p[ME - 1] = (1650.0, 2050.0)
    p[GO - 1] = polar((1650.0, 2050.0), 180.0 + 25.0, 700.0)
    p[GN - 1] = (1690.0, 2020.0)
    p[LOWER_INCISOR - 1], p[UPPER_INCISOR - 1] = (1750.0, 1600.0), (1780.0, 1600.0)  # 30 px = 3 mm overjet
    for k in range(1, 20):  # the soft-tissue points and articulare are not used by any measurement
        if np.isnan(p[k - 1]).any():
            p[k - 1] = (1500.0 + 10 * k, 1500.0)
    return p


def values(points: np.ndarray, **kwargs) -> dict[str, float]:
    return {name: m.value for name, m in analyse_landmarks(points, **kwargs).items()}


# ---------------------------------------------------------------------------------- hand-computed values
def test_sna_snb_anb_right_angle_and_signed_difference() -> None:
    v = values(face(sna=81.0, snb=77.0))
    assert v['SNA'] == pytest.approx(81.0) and v['SNB'] == pytest.approx(77.0) and v['ANB'] == pytest.approx(4.0)
    p = face()
    p[B - 1] = (1700.0, 1500.0)  # straight below nasion: a right angle to S-N
    assert values(p)['SNB'] == pytest.approx(90.0)
    # B in front of A (Class III): ANB is negative, not the unsigned angle A-N-B
    v = values(face(sna=78.0, snb=82.0))
    assert v['ANB'] == pytest.approx(-4.0)
    assert analyse_landmarks(face(sna=78.0, snb=82.0))['ANB'].class_number == 3


def test_fhi_is_posterior_over_anterior_face_height() -> None:
    p = face()
    p[S - 1], p[GO - 1] = (1000.0, 1000.0), (1000.0, 1700.0)  # S-Go 700 px
    p[N - 1], p[ME - 1] = (1700.0, 1000.0), (1700.0, 2000.0)  # N-Me 1000 px
    assert values(p)['FHI'] == pytest.approx(0.7)


def test_fma_is_sn_to_go_gn() -> None:
    p = face()
    p[GO - 1], p[GN - 1] = (1200.0, 1500.0), (1200.0 + 400.0, 1500.0 + 400.0 * math.tan(math.radians(30.0)))
    assert values(p)['FMA'] == pytest.approx(30.0)
    p[GN - 1] = (1200.0, 1900.0)  # Go->Gn straight down: a right angle to S->N
    assert values(p)['FMA'] == pytest.approx(90.0)


def test_odi_adds_the_signed_palatal_plane_angle() -> None:
    p = face()
    # AB plane to mandibular plane: B->A points up at 270 - 10 degrees... set it explicitly
    p[B - 1] = (1680.0, 1700.0)
    p[A - 1] = polar((1680.0, 1700.0), 205.0 + 70.0, 300.0)  # B->A at 70 degrees from Me->Go (205 degrees)
    assert values(p)['ODI'] == pytest.approx(70.0)  # palatal plane parallel to FH: adds 0
    p[ANS - 1] = polar((1100.0, 1450.0), 5.0, 550.0)  # ANS tipped 5 degrees down (y down): +5
    assert values(p)['ODI'] == pytest.approx(75.0)
    p[ANS - 1] = polar((1100.0, 1450.0), -5.0, 550.0)  # tipped up: -5
    assert values(p)['ODI'] == pytest.approx(65.0)
    assert analyse_landmarks(p)['ODI'].class_number == 3  # < 68.4: open bite tendency


def test_apdi_sums_facial_ab_and_palatal_angles_with_signs() -> None:
    p = face()
    p[A - 1] = (1650.0, 1300.0)
    p[B - 1] = polar((1650.0, 1300.0), 90.0 + 5.0, 400.0)  # A->B 5 degrees behind the facial plane: -5
    # FH (Or->Po) to the facial plane (straight down) is 90; palatal plane parallel: 0
    assert values(p)['APDI'] == pytest.approx(85.0)
    p[B - 1] = polar((1650.0, 1300.0), 90.0 - 5.0, 400.0)  # B in front: +5
    assert values(p)['APDI'] == pytest.approx(95.0)
    p[ANS - 1] = polar((1100.0, 1450.0), 3.0, 550.0)  # ANS 3 degrees down: +3
    assert values(p)['APDI'] == pytest.approx(98.0)
    assert analyse_landmarks(p)['APDI'].class_number == 3  # > 85.2: Class III tendency


def test_mw_is_signed_distance_in_mm_with_the_spacing() -> None:
    p = face()
    assert values(p)['MW'] == pytest.approx(3.0)
    assert values(p, spacing=0.2)['MW'] == pytest.approx(6.0)
    p[UPPER_INCISOR - 1] = (1750.0 - 30.0, 1600.0 + 40.0)  # behind the lower incisor: negative, 50 px
    assert values(p)['MW'] == pytest.approx(-5.0)
    p[UPPER_INCISOR - 1] = p[LOWER_INCISOR - 1]
    result = analyse_landmarks(p)['MW']
    assert result.value == 0.0 and result.class_number == 2 and result.class_name == 'edge to edge'


def test_uses_landmarks_1_to_19_of_38() -> None:
    p = face()
    extended = np.vstack([p, np.full((19, 2), np.nan)])  # CL-Detection 2023: 20-38 play no part
    assert values(extended) == values(p)


# ------------------------------------------------------------------------------------------ classes
@pytest.mark.parametrize('name', [n for n in MEASUREMENT_NAMES if n != 'MW'])
def test_normal_range_includes_both_cuts(name: str) -> None:
    d = DEFINITIONS[name]
    assert d.classify(d.low) == 1 and d.classify(d.high) == 1
    assert d.classify(math.nextafter(d.low, -math.inf)) == d.below
    assert d.classify(math.nextafter(d.high, math.inf)) == d.above
    assert d.classify(math.nan) is None


@pytest.mark.parametrize('name, below, above', [('ANB', 'Class III', 'Class II'),
                                                ('SNB', 'retrognathic mandible', 'prognathic mandible'),
                                                ('SNA', 'retrognathic maxilla', 'prognathic maxilla'),
                                                ('ODI', 'open bite tendency', 'deep bite tendency'),
                                                ('APDI', 'Class II tendency', 'Class III tendency'),
                                                ('FHI', 'long face tendency', 'short face tendency'),
                                                ('FMA', 'mandible low angle tendency', 'mandible high angle tendency')])
def test_direction_of_the_classes(name: str, below: str, above: str) -> None:
    d = DEFINITIONS[name]
    assert d.classes[d.classify(d.low - 1)] == below and d.classes[d.classify(d.high + 1)] == above


def test_mw_classes_at_their_cuts() -> None:
    mw = DEFINITIONS['MW']
    assert [mw.classify(v) for v in (2.0, 4.5, math.nextafter(4.5, 5), 0.0, -0.1, 1.99, 10.0)] == [1, 1, 4, 2, 3, 3, 4]


def test_ratio_exactly_at_the_cut_from_geometry() -> None:
    p = face()
    p[S - 1], p[GO - 1], p[N - 1], p[ME - 1] = (1000.0, 1000.0), (1000.0, 1750.0), (1700.0, 1000.0), (1700.0, 2000.0)
    result = analyse_landmarks(p)['FHI']
    assert result.value == 0.75 and result.class_number == 1
    p[GO - 1] = (1000.0, 1751.0)
    assert analyse_landmarks(p)['FHI'].class_number == 2


# --------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('shape', [(18, 2), (19, 3), (38,)])
def test_wrong_shape_is_an_input_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match='K x 2 with K >= 19'):
        analyse_landmarks(np.zeros(shape), source='x.json')


@pytest.mark.parametrize('spacing', [0.0, -0.1, math.nan, 'a', None])
def test_bad_spacing_is_an_input_error(spacing: float) -> None:
    with pytest.raises(InputError, match='spacing'):
        analyse_landmarks(face(), spacing=spacing)


def test_missing_landmark_gives_nan_and_no_class_for_what_uses_it() -> None:
    p = face()
    p[A - 1] = (np.nan, 1.0)
    results = analyse_landmarks(p)
    for name in ('ANB', 'SNA', 'ODI', 'APDI'):
        assert math.isnan(results[name].value) and results[name].class_number is None
        assert 'landmark 5 (subspinale) missing' in results[name].reason
    for name in ('SNB', 'FHI', 'FMA', 'MW'):
        assert math.isfinite(results[name].value) and results[name].class_number is not None
    visible = np.ones(19)
    visible[GN - 1] = 0
    assert 'landmark 9 (gnathion) missing' in analyse_landmarks(face(), visible=visible)['FMA'].reason


def test_degenerate_geometry_is_nan_with_the_reason() -> None:
    p = face()
    p[N - 1] = p[S - 1]
    results = analyse_landmarks(p)
    assert 'landmarks 2 and 1 coincide' in results['SNA'].reason and results['SNA'].class_number is None
    p = face()
    p[ME - 1] = p[N - 1]
    assert math.isnan(analyse_landmarks(p)['FHI'].value)


def test_profile_facing_left_gives_no_signed_measurement() -> None:
    p = face()
    mirrored = p.copy()
    mirrored[:, 0] = 3000.0 - p[:, 0]
    results = analyse_landmarks(mirrored)
    for name in ('ODI', 'APDI', 'MW'):
        assert results[name].class_number is None and 'faces left' in results[name].reason
    original = values(p)
    for name in ('ANB', 'SNA', 'SNB', 'FHI', 'FMA'):  # unsigned by construction: the mirror changes nothing
        assert results[name].value == pytest.approx(original[name])


# --------------------------------------------------------------------------------- agreement, rows
def _result(name: str, cls: int | None) -> Measurement:
    return Measurement(name, math.nan if cls is None else 1.0, DEFINITIONS[name].unit, cls)


def test_agreement_leaves_out_unmeasurable_reference_and_counts_failed_predictions() -> None:
    def image(cls_anb, cls_other=1):
        return {n: _result(n, cls_anb if n == 'ANB' else cls_other) for n in MEASUREMENT_NAMES}

    predicted = [image(1), image(2), image(None), image(3)]
    reference = [image(1), image(1), image(1), image(None)]
    counts = class_agreement(predicted, reference)
    assert counts['ANB'] == (1, 3) and counts['SNA'] == (4, 4)
    assert agreement_percent(counts)['ANB'] == pytest.approx(100 / 3)
    with pytest.raises(ValueError):
        class_agreement(predicted, reference[:2])


def test_rows_hold_values_classes_and_reasons() -> None:
    p = face()
    q = face()
    q[A - 1] = (np.nan, np.nan)
    row = measurement_row(3, analyse_landmarks(q), key='slice')
    assert row['slice'] == 3 and row['ANB'] == '' and row['ANB_class'] == '' and row['SNB_class'] == 1
    assert 'ANB: landmark 5 (subspinale) missing' in row['note']
    both = comparison_row('151.jpg', analyse_landmarks(q), analyse_landmarks(p))
    assert both['SNA_gt'] == pytest.approx(81.0) and both['SNA_pred'] == '' and both['SNA_gt_class'] == 1
    assert both['note'].startswith('pred ANB: landmark 5')


def test_analysis_overlay_draws_the_planes_and_skips_missing_landmarks() -> None:
    from cldetection.visualize import ANALYSIS_LINE_COLOURS, draw_analysis_overlay

    image = np.full((2400, 2000), 60, np.uint8)
    p = face()
    overlay = draw_analysis_overlay(image, p, analyse_landmarks(p), analyse_landmarks(p), title='x')
    assert overlay.shape == (2400, 2000, 3)
    for line, (start, end) in (('FH', (PO, OR)), ('palatal', (PNS, ANS)), ('incisors', (LOWER_INCISOR, UPPER_INCISOR))):
        x, y = np.round((p[start - 1] + p[end - 1]) / 2).astype(int)
        assert np.abs(overlay[y, x].astype(int) - ANALYSIS_LINE_COLOURS[line]).max() < 40, line
    q = p.copy()
    q[PNS - 1] = (np.nan, np.nan)
    missing = draw_analysis_overlay(image, q, analyse_landmarks(q))
    x, y = np.round((p[PNS - 1] + p[ANS - 1]) / 2).astype(int)
    assert (missing[y, x] == 60).all()  # no palatal plane without PNS
