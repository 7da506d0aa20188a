"""The review report of step 5's "images in, reviewed answer out" mode: an overlay per image and one HTML page.

Why. A landmark prediction is only useful to a clinician who knows which points to check. Step 5 attaches to
every landmark a calibrated *predicted error* (the radius, in mm, that holds the true point with probability
``coverage``) and flags the points to review; this module turns those results into something a person reads
in a minute: each radiograph with its points coloured by predicted error and the review points ringed, the
review points listed first, then the cephalometric measurements with their intervals and how likely their
class is wrong.

What.

* :func:`draw_review_overlay` draws one result on its image (BGR uint8 at the image's own resolution, for
  ``cv2.imwrite``): the analysis lines, planes and values of :func:`cldetection.visualize.draw_analysis_overlay`
  (with >= 19 landmarks), every landmark as a dot coloured by :func:`error_colour`, each review point inside a
  large magenta ring with its number, and a legend of the colour scale in the bottom-left corner.
* :func:`write_report` writes ONE self-contained HTML page for a run: no network, no external file, no
  JavaScript. The overlays are embedded as base64 JPEG (longest side at most :data:`MAX_EMBEDDED_SIDE` px,
  quality :data:`JPEG_QUALITY`; shrinking and encoding is the page's only real cost, about 0.01 s for a
  2400 x 1935 radiograph on 2 cores, see :func:`downscale`); all text is HTML-escaped (file names come from
  the user); the page is written under a temporary name and renamed
  (:func:`cldetection.challenge_io.atomic_output`), so a crash never leaves a half-written report.

Colour scale (fixed, so that two reports compare at a glance; BGR in :data:`ERROR_COLOURS`):

* grey: predicted error unknown (no calibration, or no spacing to express it in mm);
* green: predicted error <= 1 mm (:data:`GOOD_ERROR_MM`);
* yellow to orange: more than 1 mm up to the review threshold, linearly from yellow (1 mm) to orange (threshold);
* red: above the review threshold (these points are also flagged for review).

Review points are marked by the ring, whatever their colour: a point is flagged for other reasons too
(e.g. ``'outside the image'``) and then may be grey or green.

DOM of the page, stable for tests and for anyone scraping it: ``#summary`` (run summary, with
``#no-calibration`` when there is none and ``ul#failures`` listing the inputs that failed), ``table.index``
(one row per image), then per image ``section.image#image-<n>`` holding ``p.spacing`` or
``p.warning.spacing-unknown``, ``img.overlay``, ``table.review`` (rows ``tr.flagged``, the worst predicted
error first) or ``p.no-review``, ``table.measurements`` (rows ``tr.uncertain`` when the probability that the
class is wrong is >= 0.2 as shown) or ``p.no-measurements``, and ``details.landmarks`` > ``table.landmarks``
(every landmark, ``tr.flagged`` for review points). A missing value (``None``) is shown as ``n/a`` in a
``td.na`` cell.
"""
from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import cv2
import numpy as np

from .analysis import DEFINITIONS, Measurement
from .challenge_io import atomic_output
from .visualize import OUTLINE_COLOUR, _text, draw_analysis_overlay

# ------------------------------------------------------------------------------------------ colour scale
#: Predicted errors up to this (mm) are green.
GOOD_ERROR_MM = 1.0
#: BGR colours of the scale (see the module docstring).
ERROR_COLOURS: dict[str, tuple[int, int, int]] = {
    'unknown': (160, 160, 160), 'good': (60, 200, 60), 'fair': (0, 230, 255), 'poor': (0, 140, 255),
    'review': (40, 40, 230),
}
#: BGR colour of the ring around a review point (not on the error scale, not an analysis-line colour).
RING_COLOUR = (255, 0, 255)
#: Probability that a measurement's class is wrong from which the report highlights it (as shown, 2 decimals).
UNCERTAIN_CLASS_P = 0.2
#: Longest side (px) of an overlay embedded in the page, and its JPEG quality.
MAX_EMBEDDED_SIDE = 1400
JPEG_QUALITY = 85


def error_colour(predicted_error_mm: Optional[float], threshold_mm: float) -> tuple[int, int, int]:
    """BGR colour of a landmark on the fixed scale: grey unknown, green <= 1 mm, yellow->orange up to
    ``threshold_mm``, red above it."""
    if predicted_error_mm is None or not math.isfinite(predicted_error_mm):
        return ERROR_COLOURS['unknown']
    if predicted_error_mm > threshold_mm:
        return ERROR_COLOURS['review']
    if predicted_error_mm <= GOOD_ERROR_MM:
        return ERROR_COLOURS['good']
    t = (predicted_error_mm - GOOD_ERROR_MM) / max(threshold_mm - GOOD_ERROR_MM, 1e-9)
    fair, poor = np.array(ERROR_COLOURS['fair'], float), np.array(ERROR_COLOURS['poor'], float)
    return tuple(int(round(c)) for c in fair + min(max(t, 0.0), 1.0) * (poor - fair))


def _hex(bgr: tuple[int, int, int]) -> str:
    """CSS colour of a BGR triple."""
    return '#{:02x}{:02x}{:02x}'.format(bgr[2], bgr[1], bgr[0])


# --------------------------------------------------------------------------------------------- overlay
def _number(value: Any) -> Optional[float]:
    """``value`` as a finite float, or ``None`` (``None``, NaN, text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _points(result: Mapping) -> np.ndarray:
    """``K x 2`` pixel coordinates of the result's landmarks, NaN where unknown."""
    coordinates = [[_number(p.get('x_px')), _number(p.get('y_px'))] for p in result['landmarks']]
    return np.array([[np.nan if c is None else c for c in xy] for xy in coordinates],
                    dtype=np.float64).reshape(-1, 2)


def _threshold(result: Mapping) -> float:
    threshold = _number(result.get('review_threshold_mm'))
    return threshold if threshold is not None else 2.0


def _as_bgr(image_rgb: np.ndarray) -> np.ndarray:
    """A BGR uint8 copy of an RGB (or grey) image; other dtypes are stretched to 0-255."""
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        low, high = np.nanmin(image), np.nanmax(image)
        image = np.nan_to_num((image - low) * (255.0 / max(high - low, 1e-12))).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def _analysis_measurements(result: Mapping) -> dict[str, Measurement]:
    """The result's measurements as :class:`~cldetection.analysis.Measurement` (those the legend knows)."""
    found = {}
    for m in result.get('measurements') or []:
        name = m.get('name')
        if name not in DEFINITIONS:
            continue
        value = _number(m.get('value'))
        number = m.get('class') if value is not None else None
        found[name] = Measurement(name, math.nan if value is None else value, DEFINITIONS[name].unit,
                                  number if number in DEFINITIONS[name].classes else None,
                                  str(m.get('note') or ''))
    return found


def _draw_scale_legend(canvas: np.ndarray, threshold: float, unit: float, coverage: Optional[float]) -> None:
    """The colour scale and the ring, bottom-left, on a dark box so it reads on any background."""
    entries = [(ERROR_COLOURS['good'], f'<= {GOOD_ERROR_MM:g} mm'),
               (ERROR_COLOURS['fair'], f'> {GOOD_ERROR_MM:g} mm'),
               (ERROR_COLOURS['poor'], f'up to {threshold:g} mm'),
               (ERROR_COLOURS['review'], f'> {threshold:g} mm'),
               (ERROR_COLOURS['unknown'], 'unknown'),
               (RING_COLOUR, 'review')]
    title = 'predicted error' + (f' ({coverage:.0%})' if coverage is not None else '')
    scale, thickness = max(0.4, 0.55 * unit), max(1, round(1.2 * unit))
    step, swatch = int(24 * unit) + 6, max(4, round(7 * unit))
    (text_w, _), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    height, width = canvas.shape[:2]
    x0, y_top = int(12 * unit) + 4, height - (len(entries) + 1) * step - int(16 * unit) - 4
    box = (max(text_w, 3 * swatch + int(150 * unit)) + int(16 * unit))
    shade = canvas[max(0, y_top):height - int(4 * unit), max(0, x0 - int(6 * unit)):min(width, x0 + box)]
    shade[:] = (shade * 0.45).astype(np.uint8)  # darken, not hide, what lies under the legend
    y = y_top + step
    _text(canvas, title, (x0, y), scale, thickness)
    for colour, label in entries:
        y += step
        centre = (x0 + swatch, y - step // 4)
        if colour == RING_COLOUR:
            cv2.circle(canvas, centre, swatch, colour, max(1, round(1.5 * unit)), cv2.LINE_AA)
        else:
            cv2.circle(canvas, centre, swatch, colour, -1, cv2.LINE_AA)
        _text(canvas, label, (x0 + 3 * swatch, y), scale, thickness)


def draw_review_overlay(image_rgb: np.ndarray, result: Mapping) -> np.ndarray:
    """One result drawn on its image: a BGR uint8 array at the image's resolution (for ``cv2.imwrite``).

    Args:
        image_rgb: ``H x W x 3`` RGB (or ``H x W`` grey) image the landmarks were predicted on.
        result: step 5's per-image result (``landmarks``, ``measurements``, ``review_threshold_mm``, ...).

    With >= 19 landmarks the analysis lines and the measurement legend come from
    :func:`cldetection.visualize.draw_analysis_overlay` (top-left); then every landmark is a dot coloured by
    :func:`error_colour`, each review point gets a large :data:`RING_COLOUR` ring and its number, and the
    colour scale is drawn bottom-left. Sizes scale with the image as in :mod:`cldetection.visualize`.
    """
    canvas = _as_bgr(image_rgb)
    points = _points(result)
    threshold = _threshold(result)
    unit = max(canvas.shape[:2]) / 1000.0
    if len(points) >= 19:
        canvas = draw_analysis_overlay(canvas, points, _analysis_measurements(result),
                                       title=Path(str(result.get('image', ''))).name)
    # a dot a little larger than the analysis overlay's red one (radius 4 units), so it covers it
    radius, ring, line = max(3, round(5 * unit)), max(10, round(20 * unit)), max(1, round(2 * unit))
    font_scale, font_thickness = max(0.45, 0.7 * unit), max(1, round(1.6 * unit))
    for k, landmark in enumerate(result['landmarks']):
        xy = points[k]
        if not np.isfinite(xy).all():
            continue
        centre = (int(round(xy[0])), int(round(xy[1])))
        cv2.circle(canvas, centre, radius + max(1, line // 2), OUTLINE_COLOUR, -1, cv2.LINE_AA)
        cv2.circle(canvas, centre, radius, error_colour(_number(landmark.get('predicted_error_mm')), threshold),
                   -1, cv2.LINE_AA)
        if not landmark.get('review'):
            if len(points) < 19:  # no analysis overlay numbered it
                _text(canvas, str(landmark.get('landmark', k + 1)), (centre[0] + radius + 2, centre[1] - radius - 2),
                      font_scale * 0.6, max(1, font_thickness - 1))
            continue
        cv2.circle(canvas, centre, ring + line, OUTLINE_COLOUR, line, cv2.LINE_AA)
        cv2.circle(canvas, centre, ring, RING_COLOUR, line + 1, cv2.LINE_AA)
        label = str(landmark.get('landmark', k + 1))
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thickness)
        # below-left of the ring: the analysis overlay's small number sits above-right of the point
        origin = (int(centre[0] - 0.7 * ring - w), int(centre[1] + 0.7 * ring + h))
        _text(canvas, label, origin, font_scale, font_thickness, RING_COLOUR)
    coverage = _number(result.get('coverage'))
    _draw_scale_legend(canvas, threshold, unit, coverage)
    return canvas


# ------------------------------------------------------------------------------------------ HTML parts
def _esc(value: Any) -> str:
    return html.escape('' if value is None else str(value), quote=True)


def _fmt(value: Any, digits: int = 2, suffix: str = '') -> Optional[str]:
    """A number with ``digits`` decimals and ``suffix``, or ``None`` when it is missing."""
    number = _number(value)
    return None if number is None else f'{number:.{digits}f}{suffix}'


def _td(text: Optional[str], css: str = '') -> str:
    """A cell; ``None`` is shown as ``n/a`` (class ``na``), ``''`` as an empty cell. ``text`` is escaped here."""
    if text is None:
        return '<td class="na">n/a</td>'
    return f'<td class="{css}">{_esc(text)}</td>' if css else f'<td>{_esc(text)}</td>'


def _swatch(landmark: Mapping, threshold: float) -> str:
    colour = _hex(error_colour(_number(landmark.get('predicted_error_mm')), threshold))
    return f'<span class="swatch" style="background:{colour}"></span>'


def downscale(image: np.ndarray, max_side: int = MAX_EMBEDDED_SIDE) -> np.ndarray:
    """``image`` shrunk so that its longest side is at most ``max_side`` (unchanged when it already is).

    Halved by area averaging (OpenCV's fast integer path) while that still leaves it at least ``max_side``,
    then resized bilinearly by the remaining factor, which is above 1/2: a line one drawing unit wide
    (max side / 1000 px, at least 2 px: the overlays' thinnest stroke) keeps at least 60 % of its contrast.
    OpenCV's ``INTER_AREA`` at a fractional factor looks the same (39 dB PSNR between the two on a
    radiograph's overlay) but costs about 5x as much (0.04-0.06 s for a 2400 x 1935 radiograph on 2 cores),
    which would be most of the report's time per image.
    """
    while max(image.shape[:2]) >= 2 * max_side:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    height, width = image.shape[:2]
    factor = max_side / max(height, width)
    if factor >= 1.0:
        return image
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def embed_jpeg(image_bgr: np.ndarray, max_side: int = MAX_EMBEDDED_SIDE, quality: int = JPEG_QUALITY) -> str:
    """``data:`` URI of ``image_bgr`` as JPEG, shrunk by :func:`downscale` to a longest side <= ``max_side``."""
    height, width = image_bgr.shape[:2]
    ok, data = cv2.imencode('.jpg', downscale(image_bgr, max_side), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f'could not encode a {width} x {height} overlay as JPEG')
    return 'data:image/jpeg;base64,' + base64.b64encode(data.tobytes()).decode('ascii')


def _review_order(landmark: Mapping) -> tuple[float, int]:
    """Worst first: an unknown predicted error (e.g. a point outside the image) before the largest known."""
    error = _number(landmark.get('predicted_error_mm'))
    return (-math.inf if error is None else -error, int(landmark.get('landmark') or 0))


def _spacing_text(value: Any) -> Optional[str]:
    spacing = _number(value)
    return None if spacing is None else f'{spacing:g} mm/pixel'


def _spacing_html(result: Mapping) -> str:
    spacing = _number(result.get('spacing_mm'))
    if spacing is None:
        return ('<p class="warning spacing-unknown">Pixel spacing unknown: the millimetre outputs (x/y in mm, '
                'predicted errors, MW) are empty. Give the spacing to get them.</p>')
    source = result.get('spacing_source') or 'source not recorded'
    return f'<p class="spacing">Pixel spacing {_spacing_text(spacing)} ({_esc(source)})</p>'


def _review_html(result: Mapping, threshold: float) -> str:
    flagged = sorted((p for p in result['landmarks'] if p.get('review')), key=_review_order)
    if not flagged:
        return '<p class="no-review">No points to review.</p>'
    rows = ''.join(
        f'<tr class="flagged" data-landmark="{_esc(p.get("landmark"))}">'
        f'<td>{_swatch(p, threshold)}{_esc(p.get("landmark"))}</td>{_td(p.get("name"))}'
        f'{_td(_fmt(p.get("predicted_error_mm"), 2, " mm"))}{_td(p.get("review_reason"))}</tr>'
        for p in flagged)
    return ('<table class="review"><thead><tr><th>landmark</th><th>name</th><th>predicted error</th>'
            f'<th>reason</th></tr></thead><tbody>{rows}</tbody></table>')


def _measurement_value(m: Mapping) -> tuple[Optional[str], Optional[str]]:
    """The value and its interval, as text (``None`` when missing), with the measurement's unit."""
    digits = 3 if m.get('unit') == 'ratio' else 1
    unit = {'deg': ' deg', 'mm': ' mm'}.get(str(m.get('unit')), '')
    value = _fmt(m.get('value'), digits, unit)
    low, high = _fmt(m.get('low'), digits), _fmt(m.get('high'), digits)
    interval = f'{low} to {high}{unit}' if low is not None and high is not None else None
    return value, interval


def _measurements_html(result: Mapping) -> str:
    measurements = result.get('measurements') or []
    if not measurements:
        return '<p class="no-measurements">No measurements (the model has fewer than 19 landmarks).</p>'
    rows = []
    for m in measurements:
        value, interval = _measurement_value(m)
        p = _number(m.get('p_class_wrong'))
        # judged on the value as shown (2 decimals): a "0.20" is highlighted like every other 0.20
        css = ' class="uncertain"' if p is not None and round(p, 2) >= UNCERTAIN_CLASS_P else ''
        number = m.get('class')
        name = f'C{number} {m.get("class_name") or ""}'.strip() if number is not None else None
        rows.append(f'<tr{css} data-measurement="{_esc(m.get("name"))}">{_td(m.get("name"))}{_td(value)}'
                    f'{_td(interval)}{_td(name)}{_td(_fmt(p, 2))}{_td(m.get("note") or "", "note")}</tr>')
    return ('<table class="measurements"><thead><tr><th>measurement</th><th>value</th><th>interval</th>'
            '<th>class</th><th>P(class wrong)</th><th>note</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _landmarks_html(result: Mapping, threshold: float) -> str:
    rows = []
    for p in result['landmarks']:
        css = ' class="flagged"' if p.get('review') else ''
        rows.append(f'<tr{css} data-landmark="{_esc(p.get("landmark"))}"><td>{_swatch(p, threshold)}'
                    f'{_esc(p.get("landmark"))}</td>{_td(p.get("name"))}'
                    f'{_td(_fmt(p.get("x_px"), 1))}{_td(_fmt(p.get("y_px"), 1))}'
                    f'{_td(_fmt(p.get("x_mm"), 2))}{_td(_fmt(p.get("y_mm"), 2))}'
                    f'{_td(_fmt(p.get("predicted_error_mm"), 2))}{_td("yes" if p.get("review") else "no")}'
                    f'{_td(p.get("review_reason") or "", "note")}</tr>')
    return (f'<details class="landmarks"><summary>All {len(result["landmarks"])} landmarks</summary>'
            '<table class="landmarks"><thead><tr><th>landmark</th><th>name</th><th>x (px)</th><th>y (px)</th>'
            '<th>x (mm)</th><th>y (mm)</th><th>predicted error (mm)</th><th>review</th><th>reason</th></tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></details>')


def _flag_count(result: Mapping) -> int:
    return sum(1 for p in result['landmarks'] if p.get('review'))


def _section_html(index: int, result: Mapping, overlay: Optional[np.ndarray | str]) -> str:
    threshold = _threshold(result)
    name = Path(str(result.get('image', ''))).name or str(result.get('stem', ''))
    if overlay is None:
        figure = '<p class="no-overlay">No overlay.</p>'
    else:
        source = overlay if isinstance(overlay, str) else embed_jpeg(overlay)
        figure = (f'<figure><img class="overlay" src="{source}" alt="landmarks of {_esc(name)}">'
                  '<figcaption>Dots coloured by predicted error; magenta rings: points to review.</figcaption>'
                  '</figure>')
    size = f'{_esc(result.get("width"))} x {_esc(result.get("height"))} px'
    return (f'<section class="image" id="image-{index}" data-stem="{_esc(result.get("stem"))}">'
            f'<h2>{index}. {_esc(name)}</h2><p class="path">{_esc(result.get("image"))} ({size})</p>'
            f'{_spacing_html(result)}<div class="columns">{figure}<div class="tables">'
            f'<h3>Points to review ({_flag_count(result)})</h3>{_review_html(result, threshold)}'
            f'<h3>Measurements</h3>{_measurements_html(result)}</div></div>'
            f'{_landmarks_html(result, threshold)}</section>')


def _distinct(results: Sequence[Mapping], key: str) -> list[Any]:
    values = []
    for r in results:
        if r.get(key) not in values:
            values.append(r.get(key))
    return values


def _failures_html(failures: Sequence[str]) -> str:
    if not failures:
        return ''
    items = ''.join(f'<li>{_esc(line)}</li>' for line in failures)
    return (f'<div class="warning"><p>{len(failures)} input{"s" if len(failures) != 1 else ""} could not be '
            f'processed (not in this report):</p><ul id="failures">{items}</ul></div>')


def _summary_html(results: Sequence[Mapping], failures: Sequence[str] = ()) -> str:
    flagged = sum(_flag_count(r) for r in results)
    points = sum(len(r['landmarks']) for r in results)
    with_flags = sum(1 for r in results if _flag_count(r))
    calibrations = [c for c in _distinct(results, 'calibration') if c]
    if calibrations and all(r.get('calibration') for r in results):
        calibration = f'<p class="calibration">Calibration: {_esc(", ".join(map(str, calibrations)))}</p>'
    else:
        calibration = ('<p class="warning" id="no-calibration">No calibration'
                       f'{" for some images" if calibrations else ""}: predicted errors are unavailable '
                       '(grey), so points are flagged only for other reasons (e.g. outside the image).</p>')
    coverage = ', '.join(f'{c:.0%}' for c in map(_number, _distinct(results, 'coverage')) if c is not None)
    threshold = ', '.join(f'{t:g} mm' for t in map(_number, _distinct(results, 'review_threshold_mm'))
                          if t is not None)
    index_rows = ''.join(
        f'<tr><td><a href="#image-{i}">{_esc(Path(str(r.get("image", ""))).name or r.get("stem"))}</a></td>'
        f'<td>{_flag_count(r)}</td>{_td(_spacing_text(r.get("spacing_mm")))}</tr>'
        for i, r in enumerate(results, 1))
    return ('<header id="summary"><h1>Landmark review</h1>'
            f'<p class="counts">{len(results)} image{"s" if len(results) != 1 else ""}, {points} landmarks: '
            f'<strong>{flagged} flagged for review</strong> in {with_flags} image{"s" if with_flags != 1 else ""}.'
            '</p>'
            f'<p>Review threshold: {_esc(threshold or "n/a")}; predicted error = the radius holding the true point '
            f'with probability {_esc(coverage or "n/a")}.</p>{calibration}{_failures_html(failures)}'
            '<p class="scale">Colour scale: '
            + ''.join(f'<span class="swatch" style="background:{_hex(ERROR_COLOURS[k])}"></span>{label} '
                      for k, label in (('good', f'&le; {GOOD_ERROR_MM:g} mm'), ('fair', 'up to the threshold'),
                                       ('poor', 'near the threshold'), ('review', 'above it'),
                                       ('unknown', 'unknown')))
            + '</p><table class="index"><thead><tr><th>image</th><th>flagged</th><th>spacing</th></tr></thead>'
            f'<tbody>{index_rows}</tbody></table></header>')


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1440px;padding:1em 1.5em;color:#1b1b1b;background:#fafafa;line-height:1.4}
h1{margin:.2em 0}h2{margin:1.2em 0 .2em;border-bottom:2px solid #ccc}h3{margin:1em 0 .3em}
section.image{background:#fff;border:1px solid #ddd;border-radius:6px;padding:0 1em 1em;margin:1.5em 0}
table{border-collapse:collapse;margin:.3em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left}th{background:#eee}
td.na{color:#888;font-style:italic}td.note{color:#555}
tr.flagged td{background:#fde8e8}tr.uncertain td{background:#fff3cd;font-weight:600}
.warning{background:#fff3cd;border-left:5px solid #e0a800;padding:.4em .8em}
.path{color:#555;font-size:.9em;word-break:break-all;margin:.2em 0}
img.overlay{max-width:100%;height:auto;border:1px solid #999;display:block}
.columns{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
figure{margin:.5em 0;flex:1 1 520px;max-width:760px}figcaption{font-size:.85em;color:#555}
.tables{flex:1 1 440px;min-width:0}
.swatch{display:inline-block;width:.85em;height:.85em;border-radius:50%;border:1px solid #333;
margin-right:.35em;vertical-align:-.1em}
details{margin-top:1em}summary{cursor:pointer;font-weight:600}
@media print{section.image{page-break-before:always}details>table{display:table}}
"""


def write_report(results: Sequence[Mapping], overlays: Sequence[Optional[np.ndarray | str]], path: str | os.PathLike,
                 failures: Sequence[str] = ()) -> Path:
    """One self-contained HTML page for a run: a summary, then per image its overlay, review points,
    measurements and all landmarks (see the module docstring for its layout). Returns the page's path.

    Args:
        results: step 5's per-image results (the layout of ``<stem>.json``).
        overlays: :func:`draw_review_overlay` of each result (BGR, any size: they are shrunk here) or its
            :func:`embed_jpeg` already (a data URI, ~40 times smaller than the overlay: what a long run keeps), in
            the same order; ``None`` for none.
        path: the ``.html`` file (or an :class:`~cldetection.errors.OutputClaim` of it), written atomically.
        failures: one line per input that could not be processed, listed in the summary (``ul#failures``).
    """
    if len(results) != len(overlays):
        raise ValueError(f'{len(results)} results but {len(overlays)} overlays')
    sections = ''.join(_section_html(i, r, o) for i, (r, o) in enumerate(zip(results, overlays), 1))
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>Landmark review ({len(results)} images)</title><style>{_CSS}</style></head>'
            f'<body>{_summary_html(results, failures)}{sections}</body></html>\n')
    with atomic_output(path, suffix='.html') as tmp:
        tmp.write_text(page, encoding='utf-8')
    return Path(path)
