"""Pictures of an evaluation: per-image overlays, per-landmark MRE bars and the SDR curve.

Overlays are drawn with OpenCV at the image's own resolution (an error of 1 mm is 10 pixels at 0.1 mm per
pixel, so downscaling would hide it); line widths, markers and text scale with the image size so that they
read the same on a 800-pixel synthetic image as on a 2400-pixel radiograph. Plots use matplotlib's Agg
backend (no display needed).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from .metric import DEFAULT_RADII, sdr_key, success_rates

#: BGR colours: ground truth green, prediction red, error line yellow (distinct also in greyscale print).
GT_COLOUR = (60, 220, 60)
PRED_COLOUR = (40, 40, 255)
ERROR_COLOUR = (0, 230, 255)
TEXT_COLOUR = (255, 255, 255)
OUTLINE_COLOUR = (0, 0, 0)


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, thickness: int,
          colour: tuple[int, int, int] = TEXT_COLOUR) -> None:
    """Text with a dark outline, legible on bright bone and on black background alike."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, text, origin, font, scale, OUTLINE_COLOUR, thickness + max(2, thickness), cv2.LINE_AA)
    cv2.putText(image, text, origin, font, scale, colour, thickness, cv2.LINE_AA)


def draw_overlay(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, visible: Optional[np.ndarray] = None,
                 spacing: Optional[float] = None, title: str = '') -> np.ndarray:
    """Ground truth (green dots) and predictions (red crosses) joined by yellow error lines, numbered 1..K.

    Args:
        image: ``H x W x 3`` BGR uint8 (a grey image is converted).
        gt, pred: ``K x 2`` pixel coordinates ``(x, y)``.
        visible: ``K`` booleans; invisible ground truth is drawn as prediction only.
        spacing: mm per pixel, for the MRE in the legend.
        title: first legend line (e.g. the image name).
    """
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    gt, pred = np.asarray(gt, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    visible = np.ones(len(gt), dtype=bool) if visible is None else np.asarray(visible, dtype=bool)
    unit = max(canvas.shape[:2]) / 1000.0  # drawing unit: 1 at 1000 px, 2.4 on a real radiograph
    radius, line, marker = max(2, round(3.5 * unit)), max(1, round(1.2 * unit)), max(6, round(8 * unit))
    font_scale, font_thickness = max(0.35, 0.5 * unit), max(1, round(1.1 * unit))

    def point(xy: np.ndarray) -> tuple[int, int]:
        return int(round(xy[0])), int(round(xy[1]))

    for k in range(len(pred)):  # error lines first, under the markers
        if visible[k]:
            cv2.line(canvas, point(gt[k]), point(pred[k]), ERROR_COLOUR, line, cv2.LINE_AA)
    for k in range(len(pred)):  # then predictions, then ground truth on top: both stay visible when close
        cv2.drawMarker(canvas, point(pred[k]), PRED_COLOUR, cv2.MARKER_TILTED_CROSS, marker, line, cv2.LINE_AA)
    for k in range(len(pred)):
        if visible[k]:
            cv2.circle(canvas, point(gt[k]), radius, GT_COLOUR, -1, cv2.LINE_AA)
    for k in range(len(pred)):
        anchor = gt[k] if visible[k] else pred[k]
        # the number goes on the side away from the prediction, so the error line stays visible
        away = anchor - pred[k] if visible[k] else np.array([1.0, -1.0])
        norm = np.linalg.norm(away)
        direction = away / norm if norm > 1e-6 else np.array([0.7, -0.7])
        label = str(k + 1)
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thickness)
        centre = anchor + direction * (radius + 0.5 * marker + 0.6 * max(w, h))
        _text(canvas, label, (int(centre[0] - w / 2), int(centre[1] + h / 2)), font_scale, font_thickness)

    legend = [title] if title else []
    if spacing is not None and visible.any():
        errors = np.linalg.norm(pred - gt, axis=1)[visible] * spacing
        legend.append(f'MRE {errors.mean():.2f} mm (max {errors.max():.2f} mm, landmark '
                      f'{int(np.flatnonzero(visible)[np.argmax(errors)]) + 1})')
    _draw_legend(canvas, legend, unit, radius, marker, line, font_scale, font_thickness)
    return canvas


def _draw_legend(canvas: np.ndarray, lines: list[str], unit: float, radius: int, marker: int, line: int,
                 font_scale: float, font_thickness: int) -> None:
    scale, thickness = font_scale * 1.3, font_thickness + 1
    step = int(34 * unit * 1.3) + 6
    x0, y = int(12 * unit) + 4, int(12 * unit) + 4
    for text in lines:
        y += step
        _text(canvas, text, (x0, y), scale, thickness)
    symbol = 2 * marker  # width of the legend's symbol column
    for name, colour in (('ground truth', GT_COLOUR), ('prediction', PRED_COLOUR), ('error', ERROR_COLOUR)):
        y += step
        centre = (x0 + symbol // 2, y - step // 4)
        if name == 'ground truth':
            cv2.circle(canvas, centre, radius + 1, colour, -1, cv2.LINE_AA)
        elif name == 'prediction':
            cv2.drawMarker(canvas, centre, colour, cv2.MARKER_TILTED_CROSS, marker, line + 1, cv2.LINE_AA)
        else:
            cv2.line(canvas, (x0, centre[1]), (x0 + symbol, centre[1]), colour, line + 1, cv2.LINE_AA)
        _text(canvas, name, (x0 + symbol + 8, y), scale, thickness, colour)


# ------------------------------------------------------------------------------------ analysis overlay
#: BGR colour of each analysis line; the legend uses the same colours for the measurements they make.
ANALYSIS_LINE_COLOURS: dict[str, tuple[int, int, int]] = {
    'S-N': (255, 255, 255), 'N-A': (255, 200, 0), 'N-B': (255, 0, 200), 'A-B': (0, 200, 255),
    'FH': (0, 255, 0), 'palatal': (0, 140, 255), 'mandibular': (255, 80, 80), 'facial': (200, 255, 120),
    'Go-Gn': (120, 120, 255), 'S-Go': (180, 180, 180), 'N-Me': (180, 180, 180), 'incisors': (0, 255, 255),
}
#: line name -> (from, to) landmark numbers (ISBI 2015) and how far (fraction of its length) to extend it
_ANALYSIS_LINES: dict[str, tuple[int, int, float]] = {
    'S-N': (1, 2, 0.15), 'N-A': (2, 5, 0.0), 'N-B': (2, 6, 0.0), 'A-B': (5, 6, 0.3), 'FH': (4, 3, 0.25),
    'palatal': (17, 18, 0.3), 'mandibular': (10, 8, 0.2), 'facial': (2, 7, 0.1), 'Go-Gn': (10, 9, 0.15),
    'S-Go': (1, 10, 0.0), 'N-Me': (2, 8, 0.0), 'incisors': (11, 12, 0.0),
}
_MEASUREMENT_COLOURS: dict[str, str] = {'ANB': 'A-B', 'SNB': 'N-B', 'SNA': 'N-A', 'ODI': 'mandibular',
                                        'APDI': 'facial', 'FHI': 'S-Go', 'FMA': 'Go-Gn', 'MW': 'incisors'}
_UNIT_SUFFIX = {'deg': ' deg', 'mm': ' mm', 'ratio': ''}


def _format_measurement(m) -> str:
    if m.class_number is None:
        return f'n/a ({m.reason})' if m.reason else 'n/a'
    digits = 3 if m.unit == 'ratio' else 1
    return f'{m.value:.{digits}f}{_UNIT_SUFFIX[m.unit]} C{m.class_number} {m.class_name}'


def draw_analysis_overlay(image: np.ndarray, landmarks: np.ndarray, measurements: dict,
                          reference: Optional[dict] = None, title: str = '') -> np.ndarray:
    """The lines and angles of the cephalometric analysis drawn on the radiograph, with a legend of values.

    Args:
        image: ``H x W x 3`` BGR uint8 (a grey image is converted).
        landmarks: ``K x 2`` pixels, K >= 19, the landmarks the ``measurements`` come from (ISBI order).
        measurements: :func:`cldetection.analysis.analyse_landmarks` of ``landmarks``.
        reference: optionally the same of the ground truth; the legend then shows both and marks with
            ``!=`` the measurements whose classes differ.
        title: first legend line.

    Planes are drawn a little beyond their landmarks so that where they meet (the angles) is visible; arcs
    at nasion show SNA and SNB. A line whose landmarks are not finite is left out.
    """
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    points = np.asarray(landmarks, dtype=np.float64)[:19]
    unit = max(canvas.shape[:2]) / 1000.0
    line, radius = max(1, round(1.5 * unit)), max(2, round(4 * unit))
    font_scale, font_thickness = max(0.35, 0.45 * unit), max(1, round(1.0 * unit))

    def pixel(xy: np.ndarray) -> tuple[int, int]:
        return int(round(xy[0])), int(round(xy[1]))

    for name, (start, end, extend) in _ANALYSIS_LINES.items():
        a, b = points[start - 1], points[end - 1]
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            continue
        direction = b - a
        cv2.line(canvas, pixel(a - extend * direction), pixel(b + extend * direction), ANALYSIS_LINE_COLOURS[name],
                 line, cv2.LINE_AA)
    nasion, sella = points[1], points[0]
    for target, name, arc_radius in ((points[4], 'N-A', 60), (points[5], 'N-B', 80)):
        if np.isfinite([nasion, sella, target]).all():
            start = float(np.degrees(np.arctan2(*(sella - nasion)[::-1])))
            # the short way round from N->S to N->target (never the reflex angle across +-180 degrees)
            stop = start + (float(np.degrees(np.arctan2(*(target - nasion)[::-1]))) - start + 180.0) % 360.0 - 180.0
            r = int(arc_radius * unit)
            cv2.ellipse(canvas, pixel(nasion), (r, r), 0, min(start, stop), max(start, stop),
                        ANALYSIS_LINE_COLOURS[name], line, cv2.LINE_AA)
    for k, xy in enumerate(points):
        if np.isfinite(xy).all():
            cv2.circle(canvas, pixel(xy), radius, (0, 0, 255), -1, cv2.LINE_AA)
            _text(canvas, str(k + 1), pixel(xy + np.array([radius + 2, -radius - 2])), font_scale * 0.8,
                  font_thickness)

    scale, thickness = font_scale * 1.1, font_thickness + 1
    step = int(30 * unit * 1.1) + 6
    x0, y = int(12 * unit) + 4, int(12 * unit) + 4
    lines = [(title, TEXT_COLOUR)] if title else []
    if reference is not None:
        lines.append(('measurement: prediction | ground truth', TEXT_COLOUR))
    for name, m in measurements.items():
        text = f'{name}: {_format_measurement(m)}'
        if reference is not None:
            ref = reference[name]
            text += f' | {_format_measurement(ref)}'
            if ref.class_number is not None and m.class_number != ref.class_number:
                text += '  !='
        lines.append((text, ANALYSIS_LINE_COLOURS[_MEASUREMENT_COLOURS.get(name, 'S-N')]))
    for text, colour in lines:
        y += step
        _text(canvas, text, (x0, y), scale, thickness, colour)
    return canvas


# ------------------------------------------------------------------------------------------------ CSV input
def read_per_image_errors(csv_path: str | Path) -> np.ndarray:
    """``N x K`` radial errors (mm) from ``per_image.csv``'s ``error_<k>`` columns; NaN where not scored."""
    with open(csv_path, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return np.zeros((0, 0))
    columns = sorted((c for c in rows[0] if c.startswith('error_')), key=lambda c: int(c.split('_')[1]))
    return np.array([[float(r[c]) if r[c] != '' else np.nan for c in columns] for r in rows], dtype=np.float64)


def read_per_landmark_rows(csv_path: str | Path) -> list[dict]:
    with open(csv_path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


# -------------------------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib
    matplotlib.use('Agg')  # files only; never needs a display
    import matplotlib.pyplot as plt
    return plt


def plot_per_landmark_mre(rows: Sequence[dict], path: str | Path, overall_mre: Optional[float] = None) -> Path:
    """Bar chart of each landmark's MRE with its standard deviation (rows of ``per_landmark.csv``)."""
    plt = _pyplot()
    numbers = [int(r['landmark']) for r in rows]
    mre = np.array([float(r['MRE']) for r in rows])
    sd = np.array([float(r['MRE_SD']) for r in rows])
    fig, ax = plt.subplots(figsize=(max(8.0, 0.3 * len(rows) + 2), 4.5), dpi=120)
    ax.bar(numbers, mre, yerr=sd, color='#4878b8', ecolor='#555555', capsize=2, width=0.75, label='MRE ± SD')
    if overall_mre is not None:
        ax.axhline(overall_mre, color='#d62728', linestyle='--', linewidth=1.2, label=f'overall {overall_mre:.2f} mm')
    ax.axhline(2.0, color='#2ca02c', linestyle=':', linewidth=1.2, label='2 mm')
    ax.set_xticks(numbers)
    ax.set_xticklabels([str(n) for n in numbers], fontsize=8)
    ax.set_xlim(min(numbers, default=0) - 0.7, max(numbers, default=1) + 0.7)
    # a few failed landmarks must not flatten all the others: cut the axis and print the cut bars' values
    finite = mre[np.isfinite(mre)]
    top = float(np.nanmax(mre + np.nan_to_num(sd))) if finite.size else 1.0
    cap = max(5.0, 2.5 * float(np.percentile(finite, 90))) if finite.size else 1.0
    if top > cap * 1.1:
        ax.set_ylim(0, cap)
        for n, value in zip(numbers, mre):
            if value > cap:
                ax.annotate(f'{value:.1f}', (n, cap), xytext=(0, -12), textcoords='offset points', ha='center',
                            fontsize=7, color='white', fontweight='bold')
        ax.set_title(f'Mean radial error per landmark (axis cut at {cap:.1f} mm; cut bars labelled)')
    else:
        ax.set_ylim(bottom=0)
        ax.set_title('Mean radial error per landmark')
    ax.set_xlabel('landmark')
    ax.set_ylabel('radial error (mm)')
    ax.grid(axis='y', alpha=0.3)
    ax.legend(loc='upper right', fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_sdr_curve(errors_mm: np.ndarray, path: str | Path, max_radius: float = 5.0,
                   marked_radii: Sequence[float] = DEFAULT_RADII) -> Path:
    """Success detection rate against radius (0 to ``max_radius`` mm), the challenge radii marked."""
    plt = _pyplot()
    radii = np.linspace(0.0, max_radius, 501)
    fig, ax = plt.subplots(figsize=(6.4, 4.5), dpi=120)
    ax.plot(radii, success_rates(errors_mm, radii), color='#4878b8', linewidth=2)
    marked = success_rates(errors_mm, marked_radii)
    ax.plot(marked_radii, marked, 'o', color='#d62728', markersize=5, label='challenge radii')
    for r in marked_radii:
        ax.axvline(r, color='#999999', linestyle=':', linewidth=0.8)
    table = '\n'.join(f'{sdr_key(r)}: {v:5.1f} %' for r, v in zip(marked_radii, marked))
    ax.text(0.97, 0.05, table, transform=ax.transAxes, ha='right', va='bottom', family='monospace', fontsize=9,
            bbox=dict(boxstyle='round', facecolor='white', edgecolor='#bbbbbb'))
    ax.set_xlim(0, max_radius)
    ax.set_ylim(0, 100)
    ax.set_xlabel('radius (mm)')
    ax.set_ylabel('landmarks within radius (%)')
    ax.set_title(f'Success detection rate ({int(np.isfinite(errors_mm).sum())} landmarks)')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
