"""The review report of step 5 (cldetection/report.py): the overlay, the colour scale and the HTML page.

The page is checked as a DOM (parsed with html.parser) and, when Debian's ``chromium`` (or
``chromium-browser``) is on PATH, rendered by a real headless browser: its screenshot must show the overlay
and its serialised DOM must hold the sections, tables and rows the page was written with.
"""
from __future__ import annotations

import base64
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pytest

from cldetection.analysis import analyse_landmarks
from cldetection.landmarks import landmark_names
from cldetection.report import (ERROR_COLOURS, MAX_EMBEDDED_SIDE, RING_COLOUR, downscale, draw_review_overlay,
                                error_colour, write_report)
from cldetection.visualize import ANALYSIS_LINE_COLOURS

HOSTILE = '<script>alert(1)</script>'
#: 19 landmarks of a profile facing right, as fractions of (width, height): roughly where ISBI puts them.
_LAYOUT = np.array([[0.42, 0.40], [0.75, 0.42], [0.66, 0.52], [0.25, 0.50], [0.70, 0.68], [0.70, 0.84],
                    [0.69, 0.90], [0.65, 0.93], [0.68, 0.92], [0.35, 0.76], [0.73, 0.76], [0.74, 0.75],
                    [0.80, 0.72], [0.79, 0.80], [0.78, 0.66], [0.71, 0.95], [0.48, 0.64], [0.73, 0.64],
                    [0.33, 0.58]])


# ------------------------------------------------------------------------------------------------ helpers
def make_image(height: int = 400, width: int = 320, seed: int = 0) -> np.ndarray:
    """RGB uint8 with texture (a gradient, blobs and noise), so that an embedded JPEG of it is image-like."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    grey = 60 + 80 * np.exp(-(((xx - 0.5 * width) / (0.3 * width)) ** 2 + ((yy - 0.5 * height) / (0.35 * height)) ** 2))
    grey = grey + 25 * np.sin(xx / 7.0) * np.cos(yy / 11.0) + rng.normal(0, 12, (height, width))
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def make_result(height: int = 400, width: int = 320, num_landmarks: int = 19, spacing: Optional[float] = 0.1,
                errors: Optional[list] = None, flagged: dict[int, str] | None = None,
                image: str = '/data/ceph1.png', calibration: Optional[str] = '/models/best.pth.calibration.json',
                p_wrong: Optional[list] = None) -> dict:
    """A result in step 5's layout. ``errors``: predicted error per landmark (None: unknown); ``flagged``:
    landmark number -> reason, besides those whose error is above the 2 mm threshold."""
    points = np.vstack([_LAYOUT, np.random.default_rng(1).uniform(0.2, 0.8, (38, 2))])[:num_landmarks]
    points = points * [width, height]
    errors = errors if errors is not None else [0.8] * num_landmarks
    flagged = dict(flagged or {})
    names = landmark_names(max(num_landmarks, 1))
    landmarks = []
    for k, (x, y) in enumerate(points):
        error = errors[k]
        reason = flagged.get(k + 1, '')
        if not reason and error is not None and error > 2.0:
            reason = f'predicted error {error:.1f} mm > 2.0 mm'
        landmarks.append({'landmark': k + 1, 'name': names[k], 'x_px': float(x), 'y_px': float(y),
                          'x_mm': None if spacing is None else x * spacing,
                          'y_mm': None if spacing is None else y * spacing,
                          'predicted_error_mm': error, 'review': bool(reason), 'review_reason': reason})
    measurements = []
    if num_landmarks >= 19:
        for i, (name, m) in enumerate(analyse_landmarks(points, spacing or 0.1).items()):
            p = (p_wrong or [0.05] * 8)[i]
            unknown = spacing is None and m.unit == 'mm'
            measurements.append({'name': name, 'unit': m.unit, 'value': None if unknown else m.value,
                                 'low': None if unknown else m.value - 1.0, 'high': None if unknown else m.value + 1.0,
                                 'class': None if unknown else m.class_number,
                                 'class_name': '' if unknown else m.class_name,
                                 'p_class_wrong': None if unknown else p, 'note': 'spacing unknown' if unknown else ''})
    return {'image': image, 'stem': Path(image).stem, 'width': width, 'height': height, 'spacing_mm': spacing,
            'spacing_source': 'DICOM Pixel Spacing (0028,0030)' if spacing else '', 'coverage': 0.9,
            'review_threshold_mm': 2.0, 'calibration': calibration, 'landmarks': landmarks,
            'measurements': measurements}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Optional['Node']) -> None:
        self.tag, self.attrs, self.parent, self.children, self.text = tag, attrs, parent, [], []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get('class') or '').split())

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str, css: str = '') -> list['Node']:
        return [n for n in self.iter() if n.tag == tag and (not css or css in n.classes)]

    def find(self, tag: str, css: str = '') -> Optional['Node']:
        found = self.find_all(tag, css)
        return found[0] if found else None

    def all_text(self) -> str:
        return ''.join(self.text) + ''.join(c.all_text() for c in self.children)


class TreeBuilder(HTMLParser):
    """A small DOM: enough to query ``section.image``, ``table.review``, ``tr.flagged`` and their text."""
    VOID = {'img', 'meta', 'br', 'link', 'hr', 'input', 'source'}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node('#root', {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or '' for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.text.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    return builder.root


def cells(row: Node) -> list[str]:
    return [td.all_text().strip() for td in row.children if td.tag == 'td']


def body_rows(table: Node) -> list[Node]:
    return table.find('tbody').find_all('tr')


def near(overlay: np.ndarray, xy, radius: int, colour) -> int:
    """How many pixels of exactly ``colour`` (BGR) lie within ``radius`` of ``xy``."""
    x, y = int(round(xy[0])), int(round(xy[1]))
    patch = overlay[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1]
    return int(np.all(patch == np.array(colour, dtype=np.uint8), axis=2).sum())


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, list[dict]]:
    """Two images: one with spacing, calibration and flags; one hostile name without spacing."""
    errors = [0.5, 3.1, 1.5, 0.9, 2.6] + [0.7] * 14
    first = make_result(errors=errors, p_wrong=[0.31, 0.05, 0.2, 0.194, 0.0, 0.5, 0.1996, 0.02])
    second = make_result(spacing=None, errors=[None] * 19, flagged={3: 'outside the image'},
                         image=f'/data/{HOSTILE}.png', height=360, width=300)
    results = [first, second]
    overlays = [draw_review_overlay(make_image(r['height'], r['width'], seed=i), r) for i, r in enumerate(results)]
    return write_report(results, overlays, tmp_path / 'report.html'), results


# ----------------------------------------------------------------------------------------------- overlay
def test_overlay_is_bgr_uint8_at_the_image_resolution_and_leaves_the_input_alone():
    image = make_image(400, 320)
    before = image.copy()
    for result in (make_result(), make_result(num_landmarks=5), make_result(num_landmarks=38)):
        overlay = draw_review_overlay(image, result)
        assert overlay.shape == (400, 320, 3) and overlay.dtype == np.uint8
        assert not np.array_equal(overlay, image[:, :, ::-1])
    assert np.array_equal(image, before)
    grey = draw_review_overlay(image[:, :, 0], make_result())
    assert grey.shape == (400, 320, 3) and grey.dtype == np.uint8


def test_the_input_is_rgb_and_the_output_bgr():
    """A pure-red RGB image comes back red in BGR order (blue channel 0 where nothing is drawn)."""
    image = np.zeros((400, 320, 3), np.uint8)
    image[..., 0] = 200
    overlay = draw_review_overlay(image, make_result(num_landmarks=5))
    assert tuple(overlay[5, 315]) == (0, 0, 200)


@pytest.mark.parametrize('num_landmarks', [5, 19])
def test_review_points_are_ringed_and_the_others_not(num_landmarks):
    result = make_result(num_landmarks=num_landmarks, flagged={2: 'outside the image'})
    overlay = draw_review_overlay(make_image(), result)
    flagged, plain = result['landmarks'][1], result['landmarks'][0]
    assert flagged['review'] and not plain['review']
    ring = max(10, round(20 * 0.4))
    assert near(overlay, (flagged['x_px'], flagged['y_px']), ring + 4, RING_COLOUR) > 20
    assert near(overlay, (plain['x_px'], plain['y_px']), ring + 4, RING_COLOUR) == 0


def test_dots_take_the_colour_of_their_predicted_error():
    errors = [0.5, 1.5, 2.0, 3.0, None]
    result = make_result(num_landmarks=5, errors=errors)
    overlay = draw_review_overlay(make_image(), result)
    for landmark, error in zip(result['landmarks'], errors):
        x, y = int(round(landmark['x_px'])), int(round(landmark['y_px']))
        assert tuple(overlay[y, x]) == error_colour(error, 2.0), landmark


def test_colour_scale():
    assert error_colour(None, 2.0) == error_colour(math.nan, 2.0) == ERROR_COLOURS['unknown']
    assert error_colour(0.0, 2.0) == error_colour(1.0, 2.0) == ERROR_COLOURS['good']
    assert error_colour(1.0 + 1e-9, 2.0) == ERROR_COLOURS['fair']
    assert error_colour(2.0, 2.0) == ERROR_COLOURS['poor']
    assert error_colour(2.01, 2.0) == error_colour(50.0, 2.0) == ERROR_COLOURS['review']
    # yellow to orange in between: the green channel falls monotonically, red stays full
    greens = [error_colour(e, 3.0)[1] for e in np.linspace(1.01, 3.0, 9)]
    assert greens == sorted(greens, reverse=True) and greens[0] > greens[-1]
    assert all(error_colour(e, 3.0)[2] == 255 for e in np.linspace(1.01, 3.0, 9))
    # above the threshold is red even when the threshold is below 1 mm
    assert error_colour(0.9, 0.8) == ERROR_COLOURS['review']
    colours = set(ERROR_COLOURS.values()) | {RING_COLOUR}
    assert len(colours) == len(ERROR_COLOURS) + 1
    assert RING_COLOUR not in ANALYSIS_LINE_COLOURS.values()


def test_overlay_lines_and_text_scale_with_the_image():
    """The same result on a 2x larger image draws about 4x as many ring pixels (widths scale too)."""
    small = make_result(400, 320, num_landmarks=5, flagged={2: 'x'})
    large = make_result(800, 640, num_landmarks=5, flagged={2: 'x'})
    count = [int(np.all(draw_review_overlay(make_image(r['height'], r['width']), r) == RING_COLOUR, axis=2).sum())
             for r in (small, large)]
    assert 2.5 < count[1] / count[0] < 6


# -------------------------------------------------------------------------------------------------- page
def test_page_is_self_contained(report):
    path, _ = report
    page = path.read_text(encoding='utf-8')
    for forbidden in ('http://', 'https://', '//cdn', '<script', '<link', '@import', 'url('):
        assert forbidden not in page.lower(), forbidden
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    assert len(sources) == 2 and all(s.startswith('data:image/jpeg;base64,') for s in sources)
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(sources[0].split(',', 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (400, 320, 3)
    assert not list(path.parent.glob('.report.html.*')), 'the temporary file was left behind'


def test_large_overlays_are_downscaled(tmp_path):
    result = make_result(2400, 1935)
    overlay = draw_review_overlay(make_image(2400, 1935), result)
    page = write_report([result], [overlay], tmp_path / 'r.html').read_text(encoding='utf-8')
    data = re.search(r'src="data:image/jpeg;base64,([^"]*)"', page).group(1)
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    assert max(decoded.shape[:2]) == MAX_EMBEDDED_SIDE
    assert abs(decoded.shape[1] / decoded.shape[0] - 1935 / 2400) < 0.01


@pytest.mark.parametrize('shape, expected', [((2400, 1935), (1400, 1129)), ((2880, 2400), (1400, 1167)),
                                             ((1000, 800), (1000, 800)), ((1400, 3000), (653, 1400))])
def test_downscale_keeps_the_aspect_and_the_longest_side_within_bounds(shape, expected):
    image = np.zeros((*shape, 3), np.uint8)
    width = max(2, round(max(shape) / 1000))  # the overlays' thinnest stroke: 1 drawing unit, at least 2 px
    for x in range(0, shape[1] - 1, 40):  # such lines must survive the shrinking
        image[:, x:x + width] = 255
    small = downscale(image)
    assert small.shape[:2] == expected
    columns = small.max(axis=0)[:, 0]
    peaks = [columns[max(0, round(x * expected[1] / shape[1]) - 2):round(x * expected[1] / shape[1]) + 3].max()
             for x in range(0, shape[1] - 1, 40)]
    assert min(peaks) >= 0.6 * 255


def test_hostile_text_is_escaped(report, tmp_path):
    path, _ = report
    page = path.read_text(encoding='utf-8')
    assert '<script' not in page and 'alert(1)</script>' not in page
    assert '&lt;script&gt;alert(1)&lt;/script&gt;.png' in page
    hostile = make_result(num_landmarks=5, flagged={1: '<b onmouseover="x()">bad</b>'})
    hostile['landmarks'][0]['name'] = '"><img src=x onerror=alert(2)>'
    hostile['spacing_source'] = '<i>header</i>'
    page = write_report([hostile], [None], tmp_path / 'h.html').read_text(encoding='utf-8')
    assert '<b ' not in page and '<img src=x' not in page and '<i>' not in page
    assert '&lt;b onmouseover=&quot;x()&quot;&gt;bad&lt;/b&gt;' in page


def test_sections_list_review_points_first(report):
    path, results = report
    dom = parse(path.read_text(encoding='utf-8'))
    sections = dom.find_all('section', 'image')
    assert [s.attrs['id'] for s in sections] == ['image-1', 'image-2']
    for section, result in zip(sections, results):
        tables = [t for t in section.find_all('table') if t.classes & {'review', 'measurements', 'landmarks'}]
        assert [sorted(t.classes)[0] for t in tables] == ['review', 'measurements', 'landmarks']
        assert tables[2].parent.tag == 'details' and 'landmarks' in tables[2].parent.classes
        assert section.find('img', 'overlay') is not None
    review = sections[0].find('table', 'review')
    rows = body_rows(review)
    assert all('flagged' in r.classes for r in rows)
    # the worst predicted error first
    assert [r.attrs['data-landmark'] for r in rows] == ['2', '5']
    assert cells(rows[0])[1:] == ['nasion', '3.10 mm', 'predicted error 3.1 mm > 2.0 mm']
    all_rows = body_rows(sections[0].find('table', 'landmarks'))
    assert len(all_rows) == 19
    assert [r.attrs['data-landmark'] for r in all_rows if 'flagged' in r.classes] == ['2', '5']


def test_measurements_table_highlights_uncertain_classes(report):
    path, _ = report
    section = parse(path.read_text(encoding='utf-8')).find_all('section', 'image')[0]
    rows = body_rows(section.find('table', 'measurements'))
    assert [r.attrs['data-measurement'] for r in rows] == ['ANB', 'SNB', 'SNA', 'ODI', 'APDI', 'FHI', 'FMA', 'MW']
    # p >= 0.2 as shown: 0.1996 is shown "0.20" and highlighted, 0.194 ("0.19") is not
    assert [r.attrs['data-measurement'] for r in rows if 'uncertain' in r.classes] == ['ANB', 'SNA', 'FHI', 'FMA']
    assert [cells(r)[4] for r in rows] == ['0.31', '0.05', '0.20', '0.19', '0.00', '0.50', '0.20', '0.02']
    anb = cells(rows[0])
    assert anb[1].endswith(' deg') and ' to ' in anb[2] and anb[3].startswith('C') and anb[4] == '0.31'


def test_unknown_values_are_shown_as_na(report):
    path, _ = report
    page = path.read_text(encoding='utf-8')
    dom = parse(page)
    second = dom.find_all('section', 'image')[1]
    assert second.find('p', 'spacing-unknown') is not None and second.find('p', 'spacing') is None
    mw = [r for r in body_rows(second.find('table', 'measurements')) if r.attrs['data-measurement'] == 'MW'][0]
    assert cells(mw)[1:5] == ['n/a'] * 4
    landmark = body_rows(second.find('table', 'landmarks'))[0]
    assert cells(landmark)[4:7] == ['n/a'] * 3  # x/y mm and predicted error
    review = body_rows(second.find('table', 'review'))
    assert [cells(r)[2:] for r in review] == [['n/a', 'outside the image']]
    text = dom.all_text()
    assert not re.search(r'\bNone\b|\bnan\b', text)


def test_summary_counts_flags_and_warns_without_calibration(report, tmp_path):
    path, _ = report
    dom = parse(path.read_text(encoding='utf-8'))
    summary = [n for n in dom.iter() if n.attrs.get('id') == 'summary'][0]
    assert '2 images' in summary.all_text() and '3 flagged for review' in summary.all_text()
    assert not [n for n in dom.iter() if n.attrs.get('id') == 'no-calibration']
    assert [len(body_rows(dom.find('table', 'index')))] == [2]
    uncalibrated = make_result(errors=[None] * 19, calibration=None)
    dom = parse(write_report([uncalibrated], [None], tmp_path / 'u.html').read_text(encoding='utf-8'))
    warning = [n for n in dom.iter() if n.attrs.get('id') == 'no-calibration']
    assert warning and 'predicted errors are unavailable' in warning[0].all_text()
    assert dom.find('p', 'no-review') is not None


def test_failed_inputs_are_listed_in_the_summary(tmp_path):
    page = write_report([make_result()], [None], tmp_path / 'r.html',
                        failures=['/data/bad.dcm: not a DICOM file', f'/data/{HOSTILE}.png: cannot read']).read_text()
    dom = parse(page)
    failures = [n for n in dom.iter() if n.attrs.get('id') == 'failures'][0]
    assert [li.all_text() for li in failures.find_all('li')] == ['/data/bad.dcm: not a DICOM file',
                                                                 f'/data/{HOSTILE}.png: cannot read']
    assert '<script' not in page
    assert 'id="failures"' not in write_report([make_result()], [None], tmp_path / 's.html').read_text()


def test_a_model_without_the_analysis_landmarks_has_no_measurement_table(tmp_path):
    result = make_result(num_landmarks=5, errors=[0.5, 2.5, 1.0, 0.2, 0.3])
    overlay = draw_review_overlay(make_image(), result)
    dom = parse(write_report([result], [overlay], tmp_path / 'r.html').read_text(encoding='utf-8'))
    assert dom.find('table', 'measurements') is None and dom.find('p', 'no-measurements') is not None
    assert len(body_rows(dom.find('table', 'review'))) == 1


def test_results_and_overlays_must_pair_up(tmp_path):
    with pytest.raises(ValueError, match='2 results but 1 overlays'):
        write_report([make_result(), make_result()], [None], tmp_path / 'r.html')
    assert not (tmp_path / 'r.html').exists()


# ------------------------------------------------------------------------------------- headless browser
def _chromium() -> str:
    for name in ('chromium', 'chromium-browser'):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip('no chromium or chromium-browser on PATH (Debian: apt-get install chromium)')


def _run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [browser, '--headless', '--disable-gpu', '--no-sandbox', '--disable-dev-shm-usage', '--hide-scrollbars',
               '--no-first-run', f'--user-data-dir={profile}', *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f'{" ".join(command)} failed:\n{done.stderr[-3000:]}'
    return done


def test_the_page_renders_in_a_headless_browser(report, tmp_path):
    browser = _chromium()
    path, results = report
    url = path.resolve().as_uri()
    screenshot = tmp_path / 'screenshot.png'
    _run_chromium(browser, tmp_path / 'profile', f'--screenshot={screenshot}', '--window-size=1280,2000', url)
    shot = cv2.imread(str(screenshot), cv2.IMREAD_COLOR)
    assert shot is not None and shot.shape == (2000, 1280, 3)
    assert shot.std() > 10, 'the screenshot is blank'
    # the overlay is there: many distinct colours (text and tables alone have a few hundred grey levels) and
    # the magenta review ring (after JPEG, approximately)
    colours = len(np.unique(shot.reshape(-1, 3) // 4, axis=0))
    assert colours > 1500, colours
    b, g, r = (shot[..., i].astype(int) for i in range(3))
    assert ((r > 200) & (b > 200) & (g < 90)).sum() > 30, 'no review ring visible'
    # and an image-like band: many consecutive rows where over 150 neighbouring pixels differ (a line of text
    # is about 10 such rows; the 400-pixel-high overlay, all of them)
    busy = (np.abs(np.diff(shot.astype(int), axis=1)).sum(axis=2) > 20).sum(axis=1) > 150
    longest = max((len(run) for run in ''.join('1' if b else '0' for b in busy).split('0')), default=0)
    assert longest > 150, f'no image-like band in the screenshot (longest {longest} rows)'

    dom = parse(_run_chromium(browser, tmp_path / 'profile', '--dump-dom', url).stdout)
    sections = dom.find_all('section', 'image')
    assert [s.attrs.get('id') for s in sections] == ['image-1', 'image-2']
    assert len(dom.find_all('img', 'overlay')) == 2
    for section, result in zip(sections, results):
        flagged = [p for p in result['landmarks'] if p['review']]
        assert len(body_rows(section.find('table', 'review'))) == len(flagged)
        assert len(body_rows(section.find('table', 'measurements'))) == 8
        assert len(body_rows(section.find('table', 'landmarks'))) == 19
        assert section.find('details', 'landmarks') is not None
    assert 'alert(1)' in sections[1].find('p', 'path').all_text()  # shown as text, not run
    assert not dom.find_all('script')
