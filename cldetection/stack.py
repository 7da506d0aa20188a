"""Build a challenge-format stack (``.mha``) from ordinary image files.

Usage::

    python -m cldetection.stack --images A.png B.jpg ... --out stack.mha [--overwrite]

Slice ``z`` (1-based) holds the ``z``-th image, as 3 x uint8 (grey images repeated into three channels, colour
images as RGB), zero-padded on the right and bottom to 2400 x 2880 (height x width) like the CL-Detection 2023
stacks. Every image is checked (readable, 8-bit, not larger than a slice) before anything is written, and the
stack is written one slice at a time under a temporary name, so a failure leaves no partial file; the output is
claimed first (:func:`cldetection.errors.claim_output`), so a second run writing the same stack is refused.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from tqdm import tqdm

from .challenge_io import CHALLENGE_SLICE_SHAPE, check_fits_challenge_slice, write_stack
from .errors import claim_output, fail, run_cli

logger = logging.getLogger(__name__)

#: PIL modes we accept, and what they become: 8-bit grey or RGB (a palette image is expanded to RGB).
_ACCEPTED_MODES = {'L': 'L', 'RGB': 'RGB', 'P': 'RGB'}


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        fail(path, 'image not found' if not path.exists() else 'not a file')
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as err:
        fail(path, f'not a readable image ({err.__class__.__name__})')


def check_image(path: Path, shape: tuple[int, int] = CHALLENGE_SLICE_SHAPE) -> tuple[int, int]:
    """Check an image's header (format, bit depth, size) without decoding it; return ``(height, width)``."""
    with _open(path) as image:
        width, height = image.size
        if image.mode not in _ACCEPTED_MODES:
            fail(path, f'image mode is {image.mode}; the stack needs 8-bit grey or RGB images '
                       '(convert 16-bit or images with transparency first)')
    check_fits_challenge_slice(height, width, path, shape)
    return height, width


def load_slice_image(path: Path) -> np.ndarray:
    """An image as the stack stores it: ``H x W`` grey or ``H x W x 3`` RGB, uint8."""
    with _open(path) as image:
        mode = _ACCEPTED_MODES.get(image.mode)
        if mode is None:
            fail(path, f'image mode is {image.mode}; expected 8-bit grey or RGB')
        try:
            return np.asarray(image.convert(mode) if image.mode != mode else image.copy())
        except OSError as err:  # e.g. a truncated JPEG: the header was fine, the pixels are not
            fail(path, f'cannot decode the image: {err}')


def build_stack(images: Sequence[str | Path], out: str | Path, overwrite: bool = False,
                progress: bool = True) -> Path:
    """Write ``images`` (in order, slice 1 first) to ``out`` as a challenge stack; return ``out``."""
    images = [Path(p) for p in images]
    out = Path(out)
    if not images:
        fail(None, 'no images given (--images A.png B.jpg ...)')
    if out.suffix.lower() != '.mha':
        fail(out, 'the stack must be a .mha file (MetaImage with the pixels inside)')
    if any(p.resolve() == out.resolve() for p in images):
        fail(out, 'is also one of the input images')

    def slices() -> Iterator[np.ndarray]:
        for z, path in enumerate(tqdm(images, desc='stack', unit='slice', disable=not progress), start=1):
            logger.debug('slice %d: %s', z, path)
            yield load_slice_image(path)  # checked above; write_stack pads it

    with claim_output(out, overwrite) as claim:  # refused if it exists (without --overwrite) or is being written
        for path in images:  # check everything first: a bad 300th image must not cost 299 slices of writing
            check_image(path)
        stream = slices()
        try:
            write_stack(stream, claim, len(images))
        finally:
            stream.close()  # the progress bar ends before any error line
    logger.info('wrote %s: %d slices of %d x %d x 3 uint8', out, len(images), *CHALLENGE_SLICE_SHAPE)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m cldetection.stack',
        description='Build a CL-Detection 2023 style stack (.mha) from image files: slice z is the z-th image, '
                    '3 x uint8, zero-padded right and bottom to 2400 x 2880 (height x width).')
    parser.add_argument('--images', nargs='+', required=True, type=Path, metavar='IMAGE',
                        help='images in slice order (PNG, JPEG, BMP, TIFF; 8-bit grey or RGB, at most 2880 wide '
                             'and 2400 high)')
    parser.add_argument('--out', required=True, type=Path, help='the stack to write (.mha)')
    parser.add_argument('--overwrite', action='store_true', help='replace --out if it exists')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    build_stack(args.images, args.out, overwrite=args.overwrite)
    return 0


if __name__ == '__main__':
    run_cli(main)
