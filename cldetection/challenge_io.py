"""CL-Detection 2023 file formats: the image stack (``.mha``), ground-truth and prediction JSON.

The stack is one MetaImage of N slices, each a 3-channel uint8 image zero-padded on the right and bottom to
2400 x 2880 (height x width). We read it one slice at a time with our own strict MetaImage reader
(:func:`read_stack_info`, :func:`read_stack_slices`), so memory does not grow with N (the official training
stack is 400 slices, about 8 GB), compressed stacks included (inflated slice by slice, with a bound).

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
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from .errors import WRITE_ERRNOS, fail, write_problem

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
    choose the format by extension (OpenCV). ``path`` may be an :class:`~cldetection.errors.OutputClaim`
    (:func:`~cldetection.errors.claim_output`): the finished file then replaces the claim's placeholder. A full
    disk, a quota or a permission error while writing is a one-line error naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=suffix, dir=path.parent)
    except OSError as err:
        fail(path, write_problem(err))
    os.close(fd)
    try:
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o666 & ~_current_umask())
            os.replace(tmp, path)
        except OSError as err:
            if err.errno in WRITE_ERRNOS and err.filename in (None, tmp, str(path)):
                fail(path, write_problem(err))
            raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


#: The largest JSON file read (ground truth, predictions, grand-challenge's inputs.json): a ground truth of 1000
#: slices x 38 landmarks is about 4 MB.
MAX_JSON_BYTES = 64 * 2**20


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The one reader of JSON input files: any problem (missing, unreadable, too large, not JSON, nested too
    deeply) is a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        fail(path, 'file not found' if not path.exists() else 'not a file')
    try:
        if path.stat().st_size > max_bytes:
            fail(path, f'larger than the {max_bytes // 2**20} MiB a JSON input may have')
        with open(path, 'rb') as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            fail(path, f'larger than the {max_bytes // 2**20} MiB a JSON input may have')
        return json.loads(data.decode('utf-8'))
    except OSError as err:
        fail(path, f'cannot read: {err.strerror or err}')
    except UnicodeDecodeError as err:
        fail(path, f'not valid JSON (not UTF-8 text: {err.reason} at byte {err.start})')
    except json.JSONDecodeError as err:
        fail(path, f'not valid JSON ({err})')
    except RecursionError:
        fail(path, 'not valid JSON here: nested too deeply')
    except MemoryError:
        fail(path, 'not valid JSON here: too large to hold in memory')


# ----------------------------------------------------------------------------------------------- stack
#: What the stack reader accepts. Everything is checked on the header, before any pixel is read, allocated or
#: decompressed: at most ``MAX_SLICE_SIDE`` pixels wide and high (the challenge's slices are 2880 x 2400),
#: ``STACK_CHANNELS`` channels (grey slices are read as three equal channels), ``STACK_ELEMENT_TYPE`` (uint8)
#: pixels, and at most ``max_slices`` slices (``DEFAULT_MAX_SLICES`` unless the caller raises it: step 2's and
#: step 5's ``--max-slices``).
MAX_SLICE_SIDE = 4096
STACK_CHANNELS: tuple[int, ...] = (1, 3)
STACK_ELEMENT_TYPE = 'MET_UCHAR'
DEFAULT_MAX_SLICES = 1000
#: A MetaImage header is a few dozen short lines; more, or longer, is not one.
_MAX_HEADER_LINES, _MAX_HEADER_LINE = 200, 4096
#: Compressed pixel data is read in chunks of this size and inflated one slice at a time.
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class StackInfo:
    path: Path
    num_slices: int
    height: int
    width: int
    channels: int  #: as stored (1 or 3); :func:`read_stack_slices` always yields three
    #: where the pixel data lies: the stack itself (``ElementDataFile = LOCAL``) or a file beside it, and from
    #: which byte; its length when compressed (``None``: uncompressed)
    data_file: Optional[Path] = None
    data_offset: int = 0
    compressed_size: Optional[int] = None

    @property
    def slice_bytes(self) -> int:
        return self.height * self.width * self.channels


_HEADER_FIELD = re.compile(rb'^[ \t]*([A-Za-z]\w*)[ \t]*=[ \t]*(.*?)[ \t\r]*\n?$')
_WHOLE_NUMBER = re.compile(r'[0-9]{1,18}')


def _read_mha_header(path: Path) -> tuple[dict[str, str], int]:
    """Parse a MetaImage header; return its fields and the byte offset where LOCAL pixel data starts."""
    fields: dict[str, str] = {}
    offset = 0
    try:
        with open(path, 'rb') as f:
            for _ in range(_MAX_HEADER_LINES):
                line = f.readline(_MAX_HEADER_LINE)
                if not line:
                    break
                offset += len(line)
                if len(line) == _MAX_HEADER_LINE and not line.endswith(b'\n'):
                    fail(path, f'not a MetaImage (.mha) file: header line longer than {_MAX_HEADER_LINE} bytes')
                m = _HEADER_FIELD.match(line)
                if not m or not line.isascii():
                    fail(path, 'not a MetaImage (.mha) file: unreadable header line')
                key, value = m.group(1).decode('ascii'), m.group(2).decode('ascii')
                if key in fields:
                    fail(path, f'header field {key} appears twice')
                fields[key] = value
                if key == 'ElementDataFile':
                    return fields, offset
    except OSError as err:
        fail(path, f'cannot read: {err.strerror or err}')
    fail(path, 'not a MetaImage (.mha) file: no ElementDataFile in its header')


def _header_number(path: Path, fields: dict[str, str], key: str, default: Optional[int] = None) -> int:
    """A header field that must be one whole number >= 0 (strictly: no sign, no unit, no second token)."""
    raw = fields.get(key)
    if raw is None:
        if default is None:
            fail(path, f'header has no {key}')
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        fail(path, f'header field {key} = {raw[:40]!r} is not a whole number')
    return int(raw)


def _header_flag(path: Path, fields: dict[str, str], key: str, default: bool) -> bool:
    raw = fields.get(key)
    if raw is None:
        return default
    if raw.lower() not in ('true', 'false'):
        fail(path, f'header field {key} = {raw[:40]!r} is not True or False')
    return raw.lower() == 'true'


def _header_dims(path: Path, fields: dict[str, str]) -> list[int]:
    raw = fields.get('DimSize')
    if raw is None:
        fail(path, 'header has no DimSize')
    tokens = raw.split()
    bad = [t for t in tokens if not _WHOLE_NUMBER.fullmatch(t)]
    if bad:
        fail(path, f'header field DimSize = {raw[:60]!r}: {bad[0][:20]!r} is not a whole number')
    if len(tokens) not in (2, 3):
        fail(path, f'expected a 3-D stack of 2-D slices, header DimSize is {raw[:60]!r}')
    if 'NDims' in fields and _header_number(path, fields, 'NDims') != len(tokens):
        fail(path, f'header says NDims = {fields["NDims"]} but DimSize = {raw!r} has {len(tokens)} numbers')
    return [int(t) for t in tokens] + ([1] if len(tokens) == 2 else [])


def _data_file(path: Path, name: str) -> Path:
    """The pixel data file a header names: ``LOCAL`` (the stack itself) or a plain file name beside it."""
    if name == 'LOCAL':
        return path
    if (not name or name in ('.', '..', 'LIST') or any(c in name for c in '/\\%') or any(c.isspace() for c in name)
            or Path(name).is_absolute()):
        fail(path, f'ElementDataFile = {name[:60]!r}: the pixel data must be LOCAL or a plain file name in the '
                   "stack's own folder")
    data_path = path.parent / name
    if not data_path.is_file():
        fail(path, f'pixel data file {name} named in the header is missing'
                   + ('' if not data_path.exists() else ' (not a file)'))
    if data_path.resolve().parent != path.resolve().parent:
        fail(path, f'ElementDataFile = {name!r} is a link out of the stack\'s own folder')
    return data_path


def _deflate_bounds(size: int) -> tuple[int, int]:
    """Fewest and most bytes zlib/gzip data of ``size`` inflated bytes can have (deflate: at most ~1032:1;
    zlib's ``compressBound`` plus a gzip header)."""
    return size // 1100, size + (size >> 12) + (size >> 14) + (size >> 25) + 13 + 18


def read_stack_info(path: str | Path, max_slices: int = DEFAULT_MAX_SLICES) -> StackInfo:
    """Validate a challenge stack's header, and that its data is complete, without reading a pixel.

    The one reader of ``.mha`` files at the boundary: numbers are parsed strictly, sizes are capped (module
    constants above; ``max_slices``), the data must be ``LOCAL`` or a plain file name beside the stack, and
    the declared size is checked against the bytes on disk before anything is allocated or decompressed.
    """
    path = Path(path)
    if not path.is_file():
        fail(path, 'file not found' if not path.exists() else 'not a file')
    fields, data_offset = _read_mha_header(path)
    if fields.get('ObjectType', 'Image') != 'Image':
        fail(path, f'header ObjectType is {fields["ObjectType"][:40]!r}, not Image')
    if not _header_flag(path, fields, 'BinaryData', True):
        fail(path, 'header says BinaryData = False (pixels as text): only binary MetaImages are read')
    width, height, num_slices = _header_dims(path, fields)
    channels = _header_number(path, fields, 'ElementNumberOfChannels', 1)
    element = fields.get('ElementType', '?')
    if element != STACK_ELEMENT_TYPE or channels not in STACK_CHANNELS:
        fail(path, f'wrong pixel type: {channels} x {element[:40]}, the challenge stack is 3 x uint8 '
                   f'({STACK_ELEMENT_TYPE}; 1 x uint8 grey is read too)')
    if num_slices < 1 or width < 1 or height < 1:
        fail(path, f'empty stack: size {width} x {height} x {num_slices} (width x height x slices)')
    if width > MAX_SLICE_SIDE or height > MAX_SLICE_SIDE:
        fail(path, f'slices of {width} x {height} pixels (width x height) are larger than the {MAX_SLICE_SIDE} '
                   'pixels a side that is read (the challenge slice is 2880 x 2400)')
    if num_slices > max_slices:
        fail(path, f'{num_slices} slices are more than the limit of {max_slices}; pass --max-slices N to '
                   'raise it')
    if _header_number(path, fields, 'HeaderSize', 0) != 0:
        fail(path, 'header field HeaderSize is not supported (the pixel data must follow the header)')
    data_path = _data_file(path, fields['ElementDataFile'])
    if data_path != path:
        data_offset = 0
    try:
        available = data_path.stat().st_size - data_offset
    except OSError as err:
        fail(data_path, f'cannot read: {err.strerror or err}')
    expected = width * height * num_slices * channels
    compressed_size = None
    if _header_flag(path, fields, 'CompressedData', False):
        fewest, most = _deflate_bounds(expected)
        declared = _header_number(path, fields, 'CompressedDataSize', available)
        if declared > available:
            fail(path, f'truncated: header promises {declared} bytes of compressed pixel data, file holds {available}')
        if not fewest <= declared <= most:
            fail(path, f'CompressedDataSize = {declared} bytes cannot hold the {width} x {height} x {num_slices} x '
                       f'{channels} bytes the header declares (zlib needs {fewest}..{most})')
        compressed_size = declared
    elif available < expected:
        fail(path, f'truncated: header promises {expected} bytes of pixel data, file holds {available}')
    return StackInfo(path, num_slices, height, width, channels, data_path, data_offset, compressed_size)


class _SliceSource:
    """Reads slice ``z`` of a stack's pixel data into one ``H x W x C`` array; one slice in memory at a time."""

    def __init__(self, info: StackInfo) -> None:
        self.info = info
        self.file = open(info.data_file or info.path, 'rb')
        self.inflater = None
        self.next_z = 1  # compressed data: the slice the inflater's output starts

    def close(self) -> None:
        self.file.close()

    def read(self, z: int) -> np.ndarray:
        info = self.info
        out = np.empty(info.slice_bytes, dtype=np.uint8)
        if info.compressed_size is None:
            self.file.seek(info.data_offset + (z - 1) * info.slice_bytes)
            self._fill(out, self.file.readinto, z)
        else:
            if self.inflater is None or z < self.next_z:  # (re)start at the first slice
                self.file.seek(info.data_offset)
                self.inflater, self.left, self.next_z = zlib.decompressobj(32 + zlib.MAX_WBITS), info.compressed_size, 1
            while self.next_z <= z:  # slices before z are inflated into the same buffer and dropped
                self._fill(out, self._inflate, self.next_z)
                self.next_z += 1
        return out.reshape(info.height, info.width, info.channels)

    def _fill(self, out: np.ndarray, reader, z: int) -> None:
        view, done = memoryview(out), 0
        while done < len(out):
            n = reader(view[done:])
            if not n:
                fail(self.info.path, f'truncated: the pixel data ends in slice {z}')
            done += n

    def _inflate(self, view: memoryview) -> int:
        """Inflate at most ``len(view)`` bytes into ``view`` (zlib's ``max_length``: memory stays bounded)."""
        while True:
            pending = self.inflater.unconsumed_tail
            if not pending:
                if self.inflater.eof or self.left <= 0:
                    return 0
                pending = self.file.read(min(_READ_CHUNK, self.left))
                if not pending:
                    return 0
                self.left -= len(pending)
            try:
                piece = self.inflater.decompress(pending, min(len(view), _READ_CHUNK))
            except zlib.error as err:
                fail(self.info.path, f'compressed pixel data is damaged ({err})')
            if piece:
                view[:len(piece)] = piece
                return len(piece)
            if self.inflater.eof:
                return 0


def read_stack_slices(path: str | Path, slices: Iterable[int] | None = None, info: StackInfo | None = None,
                      max_slices: int = DEFAULT_MAX_SLICES) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(z, image)`` for each 1-based slice ``z``: an ``H x W x 3`` uint8 array, padding included.

    Only one slice is in memory at a time: uncompressed data is read straight from its place in the file,
    compressed data inflated slice by slice with a bound (slices in increasing order are read in one pass).
    """
    info = info or read_stack_info(path, max_slices)
    try:
        source = _SliceSource(info)
    except OSError as err:
        fail(info.path, f'cannot read: {err.strerror or err}')
    try:
        for z in (range(1, info.num_slices + 1) if slices is None else slices):
            if not 1 <= z <= info.num_slices:
                fail(info.path, f'slice {z} is outside the stack (1..{info.num_slices})')
            try:
                image = source.read(z)
            except OSError as err:
                fail(info.path, f'cannot read slice {z}: {err.strerror or err}')
            yield z, (np.repeat(image, 3, axis=2) if info.channels == 1 else image)
            del image  # the caller's copy only, while the next slice is read
    finally:
        source.close()


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


def as_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


#: Landmark names are 1..MAX_LANDMARKS (the challenge has 38, ISBI 2015 19): a larger name is refused before
#: anything sized by the landmark count is allocated.
MAX_LANDMARKS = 1000


def load_landmarks(path: str | Path, require_spacing: bool = True,
                   max_landmarks: int = MAX_LANDMARKS) -> LandmarkSet:
    """Read and validate a ground-truth (``require_spacing``) or prediction JSON (landmarks 1..``max_landmarks``)."""
    path = Path(path)
    document = read_json(path)
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
        text = str(name).strip()
        if not re.fullmatch(r'[+-]?[0-9]{1,18}', text):
            fail(path, f'{where} has landmark name {str(name)[:40]!r}, expected a number 1, 2, ...')
        name = int(text)
        if name < 1:
            fail(path, f'{where} has landmark name {name}, names start at 1')
        if name > max_landmarks:
            fail(path, f'{where} has landmark name {name}; at most {max_landmarks} landmarks are read')
        xyz = entry.get('point')
        if not isinstance(xyz, list) or len(xyz) != 3 or any(as_number(v) is None for v in xyz):
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
            spacing = as_number(entry['scale'])
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
