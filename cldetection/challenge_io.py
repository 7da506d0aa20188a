"""CL-Detection 2023 file formats: the image stack (``.mha``), ground-truth and prediction JSON.

The stack is one MetaImage of N slices, each a 3-channel uint8 image zero-padded on the right and bottom to
2400 x 2880 (height x width). We read it one slice at a time through SimpleITK's streaming reader, so memory
does not grow with N (the official training stack is 400 slices, about 8 GB). Streaming needs uncompressed
pixel data; for a compressed stack ITK has to decompress the whole volume first.

Ground truth: ``{"points": [{"name": "1".."38", "point": [x, y, z], "scale": "0.1"}, ...]}`` with ``x, y`` in
pixels of the padded slice, ``z`` the 1-based slice and ``scale`` the pixel spacing in mm. Predictions use the
same layout without ``scale`` (see :func:`prediction_document`).
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .errors import fail

#: Slice size of the challenge stack (height, width); images are zero-padded right and bottom to it.
CHALLENGE_SLICE_SHAPE: tuple[int, int] = (2400, 2880)
PREDICTION_NAME = 'Orthodontic landmarks'
PREDICTION_TYPE = 'Multiple points'


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | Path, suffix: str = '.part') -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, it becomes ``path``.

    So an interrupted or failed write never leaves a complete-looking (or half-written) file under the real
    name. The file gets normal permissions (``mkstemp`` makes it 0600). ``suffix`` matters to writers that
    choose the format by extension (OpenCV).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ----------------------------------------------------------------------------------------------- stack
@dataclass(frozen=True)
class StackInfo:
    path: Path
    num_slices: int
    height: int
    width: int
    channels: int


def _import_sitk():
    import SimpleITK as sitk
    return sitk


_HEADER_FIELD = re.compile(rb'^\s*(\w+)\s*=\s*(.*?)\s*$')
_ELEMENT_BYTES = {'MET_UCHAR': 1, 'MET_CHAR': 1, 'MET_USHORT': 2, 'MET_SHORT': 2, 'MET_UINT': 4,
                  'MET_INT': 4, 'MET_FLOAT': 4, 'MET_DOUBLE': 8, 'MET_ULONG': 8, 'MET_LONG': 8}


def _read_mha_header(path: Path) -> tuple[dict[str, str], int]:
    """Parse a MetaImage header; return its fields and the byte offset where LOCAL pixel data starts."""
    fields: dict[str, str] = {}
    offset = 0
    with open(path, 'rb') as f:
        for _ in range(200):  # a MetaImage header is a few dozen lines; stop early on binary junk
            line = f.readline(4096)
            if not line:
                break
            offset += len(line)
            m = _HEADER_FIELD.match(line)
            if not m:
                fail(path, 'not a MetaImage (.mha) file: unreadable header line')
            key = m.group(1).decode('ascii', 'replace')
            fields[key] = m.group(2).decode('ascii', 'replace')
            if key == 'ElementDataFile':
                return fields, offset
    fail(path, 'not a MetaImage (.mha) file: no ElementDataFile in its header')


def _check_complete(path: Path, fields: dict[str, str], data_offset: int) -> None:
    """Fail if the pixel data is shorter than the header promises (a truncated copy or download)."""
    if fields.get('ElementDataFile') != 'LOCAL':
        data_path, data_offset = path.parent / fields['ElementDataFile'], 0
        if not data_path.is_file():
            fail(path, f'pixel data file {data_path.name} named in the header is missing')
    else:
        data_path = path
    available = data_path.stat().st_size - data_offset
    if fields.get('CompressedData', 'False').lower() == 'true':
        expected = int(fields.get('CompressedDataSize', '0') or 0)
    else:
        dims = [int(v) for v in fields.get('DimSize', '').split()]
        channels = int(fields.get('ElementNumberOfChannels', '1'))
        expected = math.prod(dims) * channels * _ELEMENT_BYTES.get(fields.get('ElementType', ''), 1)
    if available < expected:
        fail(path, f'truncated: header promises {expected} bytes of pixel data, file holds {available}')


def read_stack_info(path: str | Path) -> StackInfo:
    """Validate a challenge stack's header (and that its data is complete) without reading pixels."""
    path = Path(path)
    if not path.is_file():
        fail(path, 'file not found' if not path.exists() else 'not a file')
    fields, data_offset = _read_mha_header(path)
    dims = [int(v) for v in fields.get('DimSize', '').split() if v.lstrip('-').isdigit()]
    if len(dims) not in (2, 3):
        fail(path, f'expected a 3-D stack of 2-D slices, header DimSize is {fields.get("DimSize")!r}')
    if len(dims) == 2:
        dims.append(1)
    width, height, num_slices = dims
    if num_slices < 1 or width < 1 or height < 1:
        fail(path, f'empty stack: size {width} x {height} x {num_slices} (width x height x slices)')
    channels = int(fields.get('ElementNumberOfChannels', '1'))
    element = fields.get('ElementType', '?')
    if element != 'MET_UCHAR' or channels != 3:
        fail(path, f'wrong pixel type: {channels} x {element}, the challenge stack is 3 x uint8 (MET_UCHAR)')
    _check_complete(path, fields, data_offset)
    sitk = _import_sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        fail(path, f'SimpleITK cannot read this MetaImage: {str(err).strip().splitlines()[-1]}')
    return StackInfo(path, num_slices, height, width, channels)


def read_stack_slices(path: str | Path, slices: Iterable[int] | None = None,
                      info: StackInfo | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(z, image)`` for each 1-based slice ``z``: an ``H x W x 3`` uint8 array, padding included.

    Only one slice is in memory at a time (SimpleITK streams the requested region from disk).
    """
    info = info or read_stack_info(path)
    sitk = _import_sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(info.path))
    reader.ReadImageInformation()
    three_d = reader.GetDimension() == 3
    for z in (range(1, info.num_slices + 1) if slices is None else slices):
        if not 1 <= z <= info.num_slices:
            fail(info.path, f'slice {z} is outside the stack (1..{info.num_slices})')
        if three_d:
            reader.SetExtractIndex([0, 0, z - 1])
            reader.SetExtractSize([info.width, info.height, 0])  # size 0 collapses z: a 2-D slice
        try:
            image = sitk.GetArrayFromImage(reader.Execute())
        except RuntimeError as err:
            fail(info.path, f'cannot read slice {z}: {str(err).strip().splitlines()[-1]}')
        yield z, np.ascontiguousarray(image.reshape(info.height, info.width, info.channels))


def crop_zero_padding(image: np.ndarray) -> np.ndarray:
    """Drop trailing all-zero rows and columns, as the organisers' baseline did.

    Only the bottom and right are cropped, so pixel coordinates are unchanged. An all-zero image is an error
    for the caller to report (returned unchanged here).
    """
    height, width = image.shape[:2]
    flat = image.reshape(height, -1)  # row-major view: a max per row is a fast 'any' over columns and channels
    rows = np.flatnonzero(flat.max(axis=1))
    if rows.size == 0:
        return image
    cols = np.flatnonzero(flat[:rows[-1] + 1].max(axis=0).reshape(width, -1).max(axis=1))
    return image[:rows[-1] + 1, :cols[-1] + 1]


def check_fits_challenge_slice(height: int, width: int, source: str | Path = '<image>',
                               shape: tuple[int, int] = CHALLENGE_SLICE_SHAPE) -> None:
    """Fail unless a ``height x width`` image fits in a challenge slice (padding only adds, never crops)."""
    if height > shape[0] or width > shape[1]:
        fail(source, f'image is {height} x {width} (height x width), larger than the challenge slice '
                     f'{shape[0]} x {shape[1]}; downscale it first')


def pad_to_challenge_slice(image: np.ndarray, source: str | Path = '<image>',
                           shape: tuple[int, int] = CHALLENGE_SLICE_SHAPE) -> np.ndarray:
    """Return ``image`` as 3 x uint8 zero-padded right and bottom to ``shape`` (height, width)."""
    if image.dtype != np.uint8:
        fail(source, f'image dtype is {image.dtype}, expected uint8')
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim != 3 or image.shape[2] != 3:
        fail(source, f'image shape is {image.shape}, expected H x W grey or H x W x 3')
    h, w = image.shape[:2]
    check_fits_challenge_slice(h, w, source, shape)
    out = np.zeros((shape[0], shape[1], 3), dtype=np.uint8)
    out[:h, :w] = image
    return out


def write_stack(slices: Iterable[np.ndarray], path: str | Path, num_slices: int,
                shape: tuple[int, int] = CHALLENGE_SLICE_SHAPE) -> Path:
    """Write a challenge-format stack, one slice at a time (memory stays at one slice).

    Each item of ``slices`` is padded with :func:`pad_to_challenge_slice`. The file is written next to ``path``
    under a temporary name and renamed when complete, so an interrupted run leaves no partial stack.
    """
    path = Path(path)
    header = ('ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n'
              'CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\n'
              'CenterOfRotation = 0 0 0\nAnatomicalOrientation = RAI\nElementSpacing = 1 1 1\n'
              f'DimSize = {shape[1]} {shape[0]} {num_slices}\nElementNumberOfChannels = 3\n'
              'ElementType = MET_UCHAR\nElementDataFile = LOCAL\n')
    written = 0
    with atomic_output(path) as tmp, open(tmp, 'wb') as f:
        f.write(header.encode('ascii'))
        for image in slices:
            written += 1
            if written > num_slices:
                raise ValueError(f'more than the announced {num_slices} slices')
            f.write(pad_to_challenge_slice(image, f'slice {written}', shape).tobytes())
        if written != num_slices:
            raise ValueError(f'got {written} slices, announced {num_slices}')
    return path


# ------------------------------------------------------------------------------------------ point JSON
@dataclass
class LandmarkSet:
    """Points of a ground-truth or prediction JSON, grouped by slice.

    ``points[z][name] = (x, y)`` with ``z`` the 1-based slice and ``name`` the 1-based landmark number;
    ``spacing[z]`` is the slice's mm per pixel (ground truth only).
    """
    path: Path
    points: dict[int, dict[int, tuple[float, float]]] = field(default_factory=dict)
    spacing: dict[int, float] = field(default_factory=dict)

    @property
    def slices(self) -> list[int]:
        return sorted(self.points)

    @property
    def num_landmarks(self) -> int:
        return max((max(p) for p in self.points.values() if p), default=0)

    def subset(self, slices: Iterable[int]) -> 'LandmarkSet':
        """The same file's points (and spacings) of ``slices`` only."""
        slices = list(slices)
        return LandmarkSet(self.path, {z: self.points[z] for z in slices},
                           {z: self.spacing[z] for z in slices if z in self.spacing})

    def missing_landmarks(self, num_landmarks: int | None = None) -> dict[int, list[int]]:
        """Slices that lack some of landmarks ``1..num_landmarks``: ``{z: [missing names]}``."""
        n = num_landmarks or self.num_landmarks
        return {z: missing for z in self.slices
                if (missing := [k for k in range(1, n + 1) if k not in self.points[z]])}

    def as_array(self, z: int, num_landmarks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(K x 2 float64 coordinates, K visibility)`` of slice ``z``; a missing landmark is (0, 0), 0."""
        n = num_landmarks or self.num_landmarks
        coords = np.zeros((n, 2), dtype=np.float64)
        visible = np.zeros(n, dtype=np.float64)
        for name, xy in self.points.get(z, {}).items():
            if name <= n:
                coords[name - 1] = xy
                visible[name - 1] = 1
        return coords, visible


def _as_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def load_landmarks(path: str | Path, require_spacing: bool = True) -> LandmarkSet:
    """Read and validate a ground-truth (``require_spacing``) or prediction JSON."""
    path = Path(path)
    if not path.is_file():
        fail(path, 'file not found' if not path.exists() else 'not a file')
    try:
        document = json.loads(path.read_text(encoding='utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        fail(path, f'not valid JSON ({err})')
    points = document.get('points') if isinstance(document, dict) else None
    if not isinstance(points, list):
        fail(path, 'no "points" list at the top level')
    if not points:
        fail(path, 'the "points" list is empty')
    result = LandmarkSet(path)
    for i, entry in enumerate(points):
        where = f'point #{i + 1}'
        if not isinstance(entry, dict):
            fail(path, f'{where} is not an object')
        name = entry.get('name')
        try:
            name = int(str(name))
        except ValueError:
            fail(path, f'{where} has landmark name {name!r}, expected a number 1, 2, ...')
        if name < 1:
            fail(path, f'{where} has landmark name {name}, names start at 1')
        xyz = entry.get('point')
        if not isinstance(xyz, list) or len(xyz) != 3 or any(_as_number(v) is None for v in xyz):
            fail(path, f'{where} (landmark {name}) has point {xyz!r}, expected [x, y, z] numbers')
        x, y, z_value = (float(v) for v in xyz)
        z = int(round(z_value))
        if z != z_value or z < 1:
            fail(path, f'{where} (landmark {name}) has z = {xyz[2]!r}, expected a slice number 1, 2, ...')
        if name in result.points.get(z, {}):
            fail(path, f'landmark {name} appears twice on slice {z}')
        result.points.setdefault(z, {})[name] = (x, y)
        if require_spacing:
            if 'scale' not in entry:
                fail(path, f'{where} (landmark {name}, slice {z}) has no "scale" (mm per pixel)')
            spacing = _as_number(entry['scale'])
            if spacing is None or spacing <= 0:
                fail(path, f'{where} (landmark {name}, slice {z}) has scale {entry["scale"]!r}; '
                           'the pixel spacing must be a number > 0 (mm)')
            previous = result.spacing.setdefault(z, spacing)
            if not math.isclose(previous, spacing, rel_tol=1e-6):
                fail(path, f'slice {z} has two different scales, {previous} and {spacing}')
    return result


def numbered_points(xy: Sequence[Sequence[float]]) -> dict[int, tuple[float, float]]:
    """One slice's ``K x 2`` points as ``{landmark 1..K: (x, y)}``, the layout of :class:`LandmarkSet` and
    :func:`ground_truth_document`."""
    return {k + 1: (float(x), float(y)) for k, (x, y) in enumerate(xy)}


def ground_truth_document(points: dict[int, dict[int, tuple[float, float]]],
                          spacing: dict[int, float]) -> dict:
    """A challenge ground-truth JSON document (as in ``train-gt.json``)."""
    return {'name': PREDICTION_NAME, 'type': PREDICTION_TYPE,
            'points': [{'name': str(name), 'point': [float(x), float(y), int(z)], 'scale': str(spacing[z])}
                       for z in sorted(points) for name, (x, y) in sorted(points[z].items())],
            'version': {'major': 1, 'minor': 0}}


def prediction_document(points: dict[int, Sequence[Sequence[float]]]) -> dict:
    """The prediction JSON the challenge expects.

    ``points[z]`` holds the K predicted ``(x, y)`` of slice ``z`` (stack pixels) for landmarks 1..K; output is
    ordered by slice, then landmark, coordinates as floats and ``z`` the 1-based slice.
    """
    return {'name': PREDICTION_NAME, 'type': PREDICTION_TYPE,
            'points': [{'name': str(k + 1), 'point': [float(xy[0]), float(xy[1]), int(z)]}
                       for z in sorted(points) for k, xy in enumerate(points[z])],
            'version': {'major': 1, 'minor': 0}}


def write_json_atomic(document: Any, path: str | Path, indent: int | None = 2) -> Path:
    """Write JSON under a temporary name in the same folder, then rename: never a half-written file."""
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        json.dump(document, f, indent=indent)
        f.flush()
        os.fsync(f.fileno())
    return path
