"""Read a user's own radiographs (step 5's ``--images``): PNG, JPEG, BMP, TIFF and DICOM, as RGB uint8 + spacing.

The challenge stack holds 8-bit RGB images, so every radiograph is brought to that: ``H x W x 3`` uint8, the
image as a person would view it (grey repeated into three channels, alpha dropped, EXIF orientation applied,
DICOM MONOCHROME1 inverted so bone is bright). The format is judged by the file's content (magic bytes, the
DICOM preamble), not its name, so a ``.png`` that is really a DICOM is read as one and garbage is refused.

Deeper than 8-bit pixels (16-bit PNG/TIFF, DICOM without a window) are windowed linearly from the 0.5th to the
99.5th percentile: radiographs rarely use their full 12- or 16-bit range, so scaling from 0..65535 would give a
nearly black image, and the percentiles ignore a few hot or dead pixels. A DICOM's own VOI LUT or Window
Center/Width, when it has one, is the window its radiologist sees and wins.

Pixel spacing (mm per pixel) comes from the DICOM header when it has one, else from the user's ``--spacing``.
Compressed DICOM is decoded by pydicom's pixel handlers (the pylibjpeg plugins and GDCM of requirements.lock); a missing
codec, like every bad input, is a one-line :class:`~cldetection.errors.InputError` naming the file.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from .challenge_io import as_number
from .errors import InputError, fail, first_line

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.dcm', '.dicom')
#: The largest side read, checked on the header before decoding: guards memory (an 8192 x 8192 16-bit RGB
#: image is 400 MB decoded); cephalograms are 2000-3000 px a side.
MAX_IMAGE_SIDE = 8192
#: The largest file read (a file is read whole before decoding).
MAX_FILE_BYTES = 2**30
#: The percentiles windowed to 0..255 when a deeper-than-8-bit image brings no window of its own.
PERCENTILE_WINDOW = (0.5, 99.5)
_UNSUPPORTED = 'unsupported format: not a PNG, JPEG, BMP, TIFF or DICOM file'
_MAGIC = ((b'\x89PNG\r\n\x1a\n', 'PNG'), (b'\xff\xd8\xff', 'JPEG'), (b'BM', 'BMP'), (b'II*\x00', 'TIFF'),
          (b'MM\x00*', 'TIFF'), (b'II+\x00', 'TIFF'), (b'MM\x00+', 'TIFF'))
#: EXIF orientation (0x0112) -> the flips and turns that show the image upright, as a viewer does (OpenCV's
#: IMREAD_UNCHANGED leaves them undone).
_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: np.rot90(a, 1)}
#: What decodes a compressed DICOM, by pydicom's transfer-syntax list (the rest: all of them).
_CODECS = {'JPEG2000TransferSyntaxes': 'pylibjpeg pylibjpeg-openjpeg', 'RLETransferSyntaxes': 'pylibjpeg pylibjpeg-rle',
           'JPEGTransferSyntaxes': 'python-gdcm', 'JPEGLSTransferSyntaxes': 'python-gdcm'}


@dataclass(frozen=True)
class Radiograph:
    """One radiograph as read by :func:`read_radiograph`."""
    path: Path
    image: np.ndarray  # H x W x 3 uint8 RGB, the image as a person would view it
    spacing_mm: Optional[float]  # mm per pixel, None when unknown
    #: how the spacing was found, e.g. 'DICOM Pixel Spacing (0028,0030)' or '--spacing'; '' when unknown
    spacing_source: str


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, 'rb') as f:
            return f.read(132)[128:] == b'DICM'
    except OSError:
        return False


def find_images(paths: Sequence[str | Path]) -> list[Path]:
    """The image files named by ``paths``, sorted, each once (by its resolved path).

    A file given directly is kept whatever its name (:func:`read_radiograph` judges it). A folder is searched
    recursively, hidden files and folders skipped, for :data:`SUPPORTED_SUFFIXES` (any case) and for other files
    that carry the DICOM preamble ('DICM' at byte 128): suffix-less ones, and those named by their UID
    (``1.2.840...123``). A missing path, or a folder without any image, is an ``InputError``.
    """
    found: dict[Path, Path] = {}
    for given in map(Path, paths):
        if given.is_dir():
            hits = []
            for root, dirs, files in os.walk(given):
                dirs[:] = [d for d in dirs if not d.startswith('.')]
                hits += [Path(root, name) for name in files if not name.startswith('.') and (
                    Path(name).suffix.lower() in SUPPORTED_SUFFIXES or _has_dicom_preamble(Path(root, name)))]
            if not hits:
                fail(given, f'no images in this folder (looked for {", ".join(SUPPORTED_SUFFIXES)} and DICOM files)')
        elif given.is_file():
            hits = [given]
        else:
            fail(given, 'not found' if not given.exists() else 'not a file or folder')
        for file in hits:
            found.setdefault(file.resolve(), file)
    return sorted(found.values(), key=str)


def read_radiograph(path: str | Path, spacing_mm: Optional[float] = None) -> Radiograph:
    """Read one radiograph (PNG, JPEG, BMP, TIFF or DICOM, judged by content) as RGB uint8 with its spacing.

    ``spacing_mm`` is the user's ``--spacing``: used only when the file gives none (the DICOM header wins; an
    INFO line says so when both are given and differ).
    """
    path = Path(path)
    user = None if spacing_mm is None else as_number(spacing_mm)
    if spacing_mm is not None and (user is None or user <= 0):
        fail('--spacing', f'{spacing_mm!r} is not a pixel spacing; give mm per pixel, a number > 0')
    if not path.is_file():
        fail(path, 'image not found' if not path.exists() else 'not a file')
    try:
        size = path.stat().st_size
        with open(path, 'rb') as f:
            head = f.read(132)
    except OSError as err:
        fail(path, f'cannot read: {err.strerror or first_line(err)}')
    if size == 0:
        fail(path, 'empty file (0 bytes)')
    if size > MAX_FILE_BYTES:
        fail(path, f'file is {size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit of one image')
    fmt = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if head[128:132] == b'DICM' or (fmt is None and path.suffix.lower() in ('.dcm', '.dicom')):
        image, spacing, source = _read_dicom(path, force=head[128:132] != b'DICM')  # force: no preamble
    elif fmt is not None:
        image, spacing, source = _read_raster(path, fmt), None, ''
    else:
        fail(path, _UNSUPPORTED)
    if spacing is None and user is not None:
        spacing, source = user, '--spacing'
    elif spacing is not None and user is not None and not math.isclose(spacing, user, rel_tol=1e-6):
        logger.info('%s: using the pixel spacing from the file, %.6g mm (%s), not --spacing %.6g',
                    path, spacing, source, user)
    return Radiograph(path, image, spacing, source)


def _check_size(path: Path, height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        fail(path, f'image is {height} x {width} pixels (height x width): empty')
    if max(height, width) > MAX_IMAGE_SIDE:
        fail(path, f'image is {height} x {width} pixels (height x width), over the limit of {MAX_IMAGE_SIDE} '
                   'a side; downscale it first')


def _read_raster(path: Path, fmt: str) -> np.ndarray:
    """PNG / JPEG / BMP / TIFF through OpenCV (8 or 16 bit, grey, RGB or RGBA); size checked on the header first."""
    from PIL import Image

    orientation = 1
    try:  # PIL reads only the header here: the size and the EXIF orientation
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with Image.open(path) as im:
                _check_size(path, im.size[1], im.size[0])
                orientation = im.getexif().get(0x0112, 1)
    except InputError:
        raise
    except Image.DecompressionBombError:
        fail(path, f'image is over the limit of {MAX_IMAGE_SIDE} pixels a side; downscale it first')
    except Exception:  # PIL does not know every variant (some TIFFs): OpenCV decides below
        pass
    try:
        data = path.read_bytes()
    except OSError as err:
        fail(path, f'cannot read: {err.strerror or first_line(err)}')
    # libjpeg fills a JPEG cut short with grey and only warns: the end-of-image marker must follow the last scan
    if fmt == 'JPEG' and data.find(b'\xff\xd9', max(0, data.rfind(b'\xff\xda'))) < 0:
        fail(path, 'cannot decode the JPEG image: the file is truncated (no end-of-image marker)')
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        fail(path, f'cannot decode the {fmt} image: the file is truncated or corrupt')
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
    elif image.ndim != 2:
        fail(path, f'unsupported {fmt} layout: {image.shape} pixels')
    image = _ORIENT.get(orientation, lambda a: a)(image)
    return _finish(path, image if image.dtype == np.uint8 else _window(image, *_percentiles(path, image)))


def _percentiles(path: Path, values: np.ndarray) -> tuple[float, float]:
    """The window from the 0.5th to the 99.5th percentile (of a few million pixels at most), or min to max."""
    sample = values.reshape(-1)[::max(1, values.size // 4_000_000)]
    if sample.dtype.kind == 'f' and not np.isfinite(sample).all():
        fail(path, 'image has non-finite pixel values (NaN or infinity)')
    lo, hi = (float(v) for v in np.percentile(sample, PERCENTILE_WINDOW))
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        fail(path, f'image is blank: every pixel has the value {lo:g}')
    return lo, hi


def _window(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``lo`` -> 0 and ``hi`` -> 255 linearly (either may be the larger), clipped, as uint8."""
    out = (values.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)


def _finish(path: Path, image: np.ndarray) -> np.ndarray:
    """Check a uint8 grey or RGB image (size, not blank) and return it as contiguous ``H x W x 3``."""
    _check_size(path, image.shape[0], image.shape[1])
    if image.min() == image.max():
        fail(path, f'image is blank: every pixel has the value {image.flat[0]}')
    return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image)


def _read_dicom(path: Path, force: bool) -> tuple[np.ndarray, Optional[float], str]:
    try:
        import pydicom
        from pydicom import uid
        from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
    except ImportError:
        fail(path, 'reading DICOM needs pydicom: pip install pydicom')
    try:
        ds = pydicom.dcmread(path, force=force)
    except Exception as err:  # pydicom raises many kinds on a bad file
        fail(path, f'not a readable DICOM file: {first_line(err)}')
    if 'PixelData' not in ds:
        fail(path, _UNSUPPORTED if force else
             'DICOM file has no pixel data (7FE0,0010): not an image, or the file is truncated')
    if ds.get('Rows') is None or ds.get('Columns') is None:
        fail(path, 'DICOM file has no Rows / Columns (0028,0010-0011)')
    _check_size(path, int(ds.Rows), int(ds.Columns))
    ts = getattr(ds, 'file_meta', {}).get('TransferSyntaxUID')
    if ts is not None:
        try:
            available = get_decoder(ts).is_available
        except NotImplementedError:
            fail(path, f'its pixel data is {ts.name}, which pydicom cannot decode; export it uncompressed or as PNG')
        if not available:
            codec = next((pip for name, pip in _CODECS.items() if ts in getattr(uid, name)),
                         'python-gdcm pylibjpeg pylibjpeg-openjpeg pylibjpeg-rle')
            fail(path, f'no installed decoder reads its {ts.name} pixel data: pip install {codec}')
    frames = int(as_number(ds.get('NumberOfFrames')) or 1)
    if frames > 1:
        logger.warning('%s: %d frames; using the first', path, frames)
    try:
        ds.pixel_array_options(index=0)
        pixels = ds.pixel_array
    except Exception as err:  # truncated data, a corrupt codestream, ...: pydicom gives each plugin's a line
        lines = [line.strip() for line in str(err).strip().splitlines()] or [repr(err)]
        fail(path, f'cannot decode the DICOM pixel data ({ts.name if ts else "no transfer syntax"}): '
                   + ' '.join([lines[0], '; '.join(lines[1:])]).strip()[:500])
    photometric = str(ds.get('PhotometricInterpretation', '')).strip().upper()
    if photometric in ('MONOCHROME1', 'MONOCHROME2') and pixels.ndim == 2:
        values = apply_modality_lut(pixels, ds)  # rescale slope / intercept, or a modality LUT
        window = (0, 255) if values.dtype == np.uint8 else None  # 8 bits without rescale: shown as stored
        if ds.get('VOILUTSequence') or ('WindowCenter' in ds and 'WindowWidth' in ds):
            try:
                values, window = apply_voi_lut(values, ds), _voi_range(ds, apply_voi_lut)
            except Exception as err:  # e.g. a window width < 1
                logger.warning('%s: ignoring its VOI LUT / window (%s)', path, first_line(err))
        image = _window(values, *(window or _percentiles(path, values)))
        if photometric == 'MONOCHROME1':
            image = 255 - image  # MONOCHROME1 shows low values bright: make it the usual bright bone
    elif photometric == 'PALETTE COLOR' or (pixels.ndim == 3 and pixels.shape[2] == 3):
        image = apply_color_lut(pixels, ds) if photometric == 'PALETTE COLOR' else pixels  # YBR: pydicom gave RGB
        if image.dtype != np.uint8:
            image = _window(image, *_percentiles(path, image))
    else:
        fail(path, f'unsupported DICOM photometric interpretation {photometric or "(none)"} for {pixels.shape} pixels')
    return (_finish(path, image), *_dicom_spacing(path, ds))


def _voi_range(ds, apply_voi_lut) -> tuple[float, float]:
    """What the file's VOI maps the darkest and brightest values to: 0..2**bits-1 for a VOI LUT (PS3.3
    C.11.2.1.1), else pydicom's windowing output for -inf and +inf (its y_min and y_max)."""
    seq = ds.get('VOILUTSequence')
    if seq and seq[0].get('LUTDescriptor') is not None and seq[0].get('LUTData') is not None:
        return 0.0, 2.0 ** int(seq[0].LUTDescriptor[2]) - 1
    lo, hi = apply_voi_lut(np.array([-np.inf, np.inf]), ds)
    return float(lo), float(hi)


def _spacing_pair(path: Path, ds, keyword: str, label: str) -> Optional[list[float]]:
    """(row, column) spacing of ``keyword``; None when absent, or (with a warning) not numbers > 0."""
    value = ds.get(keyword)
    if value is None:
        return None
    numbers = [as_number(v) for v in (value if isinstance(value, Sequence) and not isinstance(value, str)
                                       else [value])][:2]
    if not numbers or any(n is None or n <= 0 for n in numbers):
        logger.warning('%s: ignoring %s %r: not a spacing (numbers > 0 mm)', path, label, value)
        return None
    return numbers * (3 - len(numbers))  # one value: square pixels


def _dicom_spacing(path: Path, ds) -> tuple[Optional[float], str]:
    """Pixel Spacing, else Imager Pixel Spacing over the magnification factor; the mean of row and column."""
    label = 'DICOM Pixel Spacing (0028,0030)'
    pair = _spacing_pair(path, ds, 'PixelSpacing', label)
    if pair is None:
        label = 'DICOM Imager Pixel Spacing (0018,1164)'
        pair = _spacing_pair(path, ds, 'ImagerPixelSpacing', label)
        if pair is None:
            return None, ''
        factor = as_number(ds.get('EstimatedRadiographicMagnificationFactor'))
        if factor is not None and factor > 0:  # the spacing at the detector -> at the patient
            pair = [v / factor for v in pair]
            label += f' / Estimated Radiographic Magnification Factor {ds.EstimatedRadiographicMagnificationFactor}'
    row, column = pair
    if abs(row - column) > 0.01 * max(row, column):
        logger.warning('%s: row and column spacing (%.6g, %.6g mm) differ by over 1%%; using their mean',
                       path, row, column)
        label += f' (mean of row {row:.6g} and column {column:.6g} mm)'
    return (row + column) / 2, label
