"""Step 2: turn a challenge stack + ground truth into an MMPose (COCO-style) dataset.

Output layout (``OUT``)::

    OUT/images/<z>.png              slice z (1-based), zero padding cropped (coordinates unchanged)
    OUT/train.json, valid.json, test.json

Each COCO ``image`` carries ``spacing`` (mm per pixel) for ``CephalometricDataset``; each image has one
annotation with every landmark as ``[x, y, v]`` (v = 2 labelled, 0 missing), ``num_keypoints``, the whole
image as ``bbox`` and its ``area``.

Extra training stacks (``extra_train``, step 2's ``--extra_train STACK GT``) -- for example unlabelled
radiographs labelled by a trained model (step 5's ``--save_pseudo_gt_path``: self-training, measured in
``docs/accuracy_log.md``) -- go to the training split only, never to valid or test, so model selection and the
scores stay on the main stack. Their slices are written as ``OUT/images/extra<i>/<z>.png`` with image and
annotation ids ``i * EXTRA_ID_OFFSET + z``, apart from the main stack's ids ``z``.

Memory stays flat in the number of slices: slices are streamed from the stack one at a time and written
straight to PNG. Nothing is ever lost: a non-empty output folder is refused unless ``overwrite`` is set, the
folder is locked for the run (a second step 2 writing into it is refused), every file is written under a
temporary name and renamed, so an interrupted run never leaves a complete-looking JSON or a half-written image,
and a run that fails removes the files and folders it created (files it replaced under ``overwrite`` keep their
new content), so a rerun is not blocked by a half dataset.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from .challenge_io import (DEFAULT_MAX_SLICES, LandmarkSet, StackInfo, atomic_output, crop_zero_padding,
                           load_landmarks, read_stack_info, read_stack_slices, write_json_atomic)
from .errors import fail, first_line, write_problem
from .landmarks import landmark_names

logger = logging.getLogger(__name__)
SPLITS: tuple[str, ...] = ('train', 'valid', 'test')
DEFAULT_RATIOS: tuple[float, float, float] = (0.75, 0.125, 0.125)
#: Image / annotation ids of extra training stack ``i`` (1-based) are ``i * EXTRA_ID_OFFSET + z``.
EXTRA_ID_OFFSET = 100_000


@dataclass
class PreparedDataset:
    """What step 2 wrote: the output folder, slice numbers per split, and the landmark count."""
    output_dir: Path
    splits: dict[str, list[int]]
    num_landmarks: int
    missing: dict[int, list[int]] = field(default_factory=dict)
    #: Images added to the training split from each extra training stack, in ``extra_train`` order.
    extra_train_images: list[int] = field(default_factory=list)

    def ann_file(self, split: str) -> Path:
        return self.output_dir / f'{split}.json'


# -------------------------------------------------------------------------------------------- splits
def _counts_by_ratio(n: int, ratios: Sequence[float]) -> list[int]:
    """Split sizes for ``n`` items: valid and test rounded, at least 1 each when their ratio > 0 and n >= 3."""
    r_train, r_valid, r_test = ratios
    n_valid, n_test = round(n * r_valid), round(n * r_test)
    if n >= 3:
        n_valid = max(n_valid, 1) if r_valid > 0 else 0
        n_test = max(n_test, 1) if r_test > 0 else 0
    n_train = n - n_valid - n_test
    if n_train < 0 or (r_train > 0 and n_train == 0 and n >= 3):
        n_train = max(n - n_valid - n_test, 1 if r_train > 0 else 0)
        n_valid = min(n_valid, n - n_train - n_test)
    return [n_train, n_valid, n - n_train - n_valid]


def split_by_ratio(slices: Sequence[int], ratios: Sequence[float] = DEFAULT_RATIOS,
                   seed: int = 0) -> dict[str, list[int]]:
    """Shuffle ``slices`` with ``seed`` and cut them into train / valid / test by ``ratios``."""
    order = list(np.random.default_rng(seed).permutation(list(slices)))
    n_train, n_valid, _ = _counts_by_ratio(len(order), ratios)
    parts = order[:n_train], order[n_train:n_train + n_valid], order[n_train + n_valid:]
    return {name: sorted(int(z) for z in part) for name, part in zip(SPLITS, parts)}


def kfold_assignment(slices: Sequence[int], folds: int, seed: int = 0) -> list[list[int]]:
    """Partition ``slices`` into ``folds`` balanced folds after a seeded shuffle."""
    order = np.random.default_rng(seed).permutation(list(slices))
    return [sorted(int(z) for z in part) for part in np.array_split(order, folds)]


def split_by_fold(slices: Sequence[int], folds: int, fold: int, seed: int = 0,
                  valid_ratio: float = DEFAULT_RATIOS[1]) -> dict[str, list[int]]:
    """K-fold cross-validation split: test = fold ``fold`` (0-based); valid = ``valid_ratio`` of all images,
    drawn (seeded) from the other folds, so model selection never sees the test fold; train = the rest."""
    assignment = kfold_assignment(slices, folds, seed)
    test = assignment[fold]
    rest = [z for i, part in enumerate(assignment) if i != fold for z in part]
    n_valid = min(max(round(len(slices) * valid_ratio), 1 if valid_ratio > 0 else 0), max(len(rest) - 1, 0))
    order = list(np.random.default_rng(seed + 1).permutation(rest))
    return {'train': sorted(int(z) for z in order[n_valid:]), 'valid': sorted(int(z) for z in order[:n_valid]),
            'test': list(test)}


# ------------------------------------------------------------------------------------------ validation
def _compact(numbers: Sequence[int], limit: int = 12) -> str:
    shown = ', '.join(str(n) for n in numbers[:limit])
    return shown + (f', ... ({len(numbers)} in all)' if len(numbers) > limit else '')


def _check_against_stack(gt: LandmarkSet, num_slices: int, allow_missing: bool) -> dict[int, list[int]]:
    """Check the ground truth fits the stack; return the missing landmarks per slice (if allowed)."""
    outside = [z for z in gt.slices if z > num_slices]
    if outside:
        z = outside[0]
        fail(gt.path, f'landmark {min(gt.points[z])} has z = {z}, outside the stack of {num_slices} slices')
    uncovered = [z for z in range(1, num_slices + 1) if z not in gt.points]
    if uncovered:
        fail(gt.path, f'the stack has {num_slices} slices but the ground truth covers slices '
                      f'{gt.slices[0]}..{gt.slices[-1]} ({len(gt.slices)} slices); no points for slice(s) '
                      f'{_compact(uncovered)}')
    missing = gt.missing_landmarks()
    if missing and not allow_missing:
        listing = '; '.join(f'slice {z}: {_compact(names, 6)}' for z, names in list(missing.items())[:5])
        more = f' (+{len(missing) - 5} more slices)' if len(missing) > 5 else ''
        fail(gt.path, f'{len(missing)} image(s) miss landmarks of 1..{gt.num_landmarks}: {listing}{more}; '
                      'use --allow-missing to keep them with visibility 0')
    return missing


class _OutputFolder:
    """Step 2's claim on its output folder: locked (``flock``) for the run, checked empty (unless ``overwrite``)
    and writable before any slice is read; it records what the run creates so that :meth:`roll_back` can
    remove exactly that when the run fails."""

    def __init__(self, output_dir: Path, overwrite: bool) -> None:
        self.path = output_dir
        self.created: list[Path] = []  # files and folders this run made, in order
        if output_dir.exists() and not output_dir.is_dir():
            fail(output_dir, 'exists and is not a folder')
        self.mkdir(output_dir)
        try:
            self.fd = os.open(output_dir, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
        except OSError as err:
            self.roll_back()
            fail(output_dir, f'cannot open the output folder: {err.strerror or first_line(err)}')
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if any(output_dir.iterdir()) and not overwrite:
                fail(output_dir, 'output folder is not empty; choose another or pass --overwrite '
                                 '(files step 2 writes are replaced, nothing is deleted)')
            with tempfile.TemporaryFile(dir=output_dir, prefix='.step2.'):
                pass
        except BlockingIOError:
            self.release()
            fail(output_dir, 'another step 2 run is writing into this folder; wait for it or choose another')
        except OSError as err:
            self.release(roll_back=True)
            fail(output_dir, write_problem(err))
        except BaseException:
            self.release(roll_back=True)
            raise

    def mkdir(self, folder: Path) -> None:
        """Create ``folder`` and missing parents, remembering which."""
        missing = [d for d in (folder, *folder.parents) if not d.exists()][::-1]
        for d in missing:
            try:
                d.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                fail(d, f'cannot create the folder: {err.strerror or first_line(err)}')
            self.created.append(d)

    def new_file(self, path: Path) -> Path:
        """Note that the run is about to write ``path``; if it does not exist yet, a failed run removes it."""
        if not path.exists():
            self.created.append(path)
        return path

    def roll_back(self) -> None:
        for path in reversed(self.created):
            try:
                path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:  # e.g. a folder someone put a file into meanwhile: leave it
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    logger.warning('%s: could not remove it after the failed run: %s', path, err)
        self.created = []

    def release(self, roll_back: bool = False) -> None:
        if roll_back:
            self.roll_back()
        if getattr(self, 'fd', None) is not None:
            os.close(self.fd)
            self.fd = None


def _write_png_atomic(image_rgb: np.ndarray, path: Path) -> None:
    with atomic_output(path, suffix='.png') as tmp:  # OpenCV picks the format by extension
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(image_rgb[:, :, ::-1])):  # OpenCV writes BGR
            fail(path, 'could not write the PNG (disk full or no permission?)')


def _read_extra_training_stack(stack: str | Path, gt_path: str | Path, num_landmarks: int,
                               allow_missing: bool, max_slices: int = DEFAULT_MAX_SLICES
                               ) -> tuple[StackInfo, LandmarkSet]:
    """Check an extra training stack and its ground truth before anything is written."""
    info = read_stack_info(stack, max_slices)
    if info.num_slices >= EXTRA_ID_OFFSET:
        fail(info.path, f'has {info.num_slices} slices; an extra training stack may have at most '
                        f'{EXTRA_ID_OFFSET - 1}')
    gt = load_landmarks(gt_path, require_spacing=True)
    _check_against_stack(gt, info.num_slices, allow_missing)
    if gt.num_landmarks != num_landmarks:
        fail(gt.path, f'has {gt.num_landmarks} landmarks, the main ground truth has {num_landmarks} '
                      '(an extra training stack must label the same landmarks)')
    return info, gt


def _coco_entries(stack: Path, info: StackInfo, gt: LandmarkSet, image_dir: Path, num_landmarks: int,
                  progress: bool, output: _OutputFolder, folder: str = '', id_offset: int = 0,
                  outside_as_invisible: bool = False) -> Iterator[tuple[dict, dict]]:
    """Write every slice of ``stack`` as ``image_dir/[folder/]<z>.png`` (padding cropped) and yield its COCO
    ``image`` and ``annotation`` (id ``id_offset + z``), one slice in memory at a time. A labelled point
    outside its (cropped) image is an error, or with ``outside_as_invisible`` a point of visibility 0."""
    output.mkdir(image_dir / folder)
    for z, padded in tqdm(read_stack_slices(stack, info=info), total=info.num_slices,
                          desc=f'step2: {stack.name}', unit='slice', disable=not progress):
        image = crop_zero_padding(padded)
        del padded
        if not image.any():
            fail(stack, f'slice {z} is empty (all zero)')
        height, width = image.shape[:2]
        file_name = f'{folder}/{z}.png' if folder else f'{z}.png'
        coords, visible = gt.as_array(z, num_landmarks)
        outside = [k + 1 for k in range(num_landmarks) if visible[k] and not
                   (0 <= coords[k, 0] < width and 0 <= coords[k, 1] < height)]
        if outside and not outside_as_invisible:
            k = outside[0]
            fail(gt.path, f'slice {z}: landmark {k} at ({coords[k - 1, 0]:g}, {coords[k - 1, 1]:g}) lies outside '
                          f'the {width} x {height} image (width x height, zero padding cropped)'
                          + (f', and {len(outside) - 1} more' if len(outside) > 1 else '')
                          + '; --outside-as-invisible keeps such points with visibility 0')
        if outside:
            logger.warning('%s: slice %d: landmark(s) %s lie outside the %dx%d image: visibility 0',
                           gt.path, z, _compact(outside), width, height)
            visible[[k - 1 for k in outside]] = 0
        _write_png_atomic(image, output.new_file(image_dir / file_name))
        keypoints = np.concatenate([coords, 2 * visible[:, None]], axis=1)
        image_id = id_offset + z
        yield ({'id': image_id, 'file_name': file_name, 'width': width, 'height': height, 'spacing': gt.spacing[z]},
               {'id': image_id, 'image_id': image_id, 'category_id': 1, 'iscrowd': 0,
                'keypoints': [float(v) for v in keypoints.reshape(-1)], 'num_keypoints': int(visible.sum()),
                'bbox': [0, 0, width, height], 'area': float(width * height)})


# ---------------------------------------------------------------------------------------------- step 2
def prepare_coco_dataset(mha_file_path: str | Path, train_gt_path: str | Path, output_dir: str | Path, *,
                         ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0, folds: Optional[int] = None,
                         fold: Optional[int] = None, overwrite: bool = False, allow_missing: bool = False,
                         extra_train: Sequence[tuple[str | Path, str | Path]] = (),
                         progress: bool = True, outside_as_invisible: bool = False,
                         max_slices: int = DEFAULT_MAX_SLICES) -> PreparedDataset:
    """Write ``images/<z>.png`` and COCO-style ``train/valid/test.json`` for a challenge stack.

    Args:
        mha_file_path: the challenge stack (``.mha``, N slices of 3 x uint8).
        train_gt_path: its ground truth (``train-gt.json`` layout, any number of landmarks).
        output_dir: where to write; must be empty or absent unless ``overwrite``.
        ratios: train / valid / test fractions for a random split (seeded by ``seed``).
        folds, fold: k-fold cross-validation instead: test = fold ``fold`` (0-based) of ``folds``; valid is
            ``ratios[1]`` of all images taken from the other folds.
        overwrite: allow a non-empty output folder (our files are replaced; nothing is deleted).
        allow_missing: keep images that lack some landmarks (those get visibility 0) instead of failing.
        extra_train: ``(stack, ground truth)`` pairs whose every slice joins the training split only (e.g.
            pseudo-labelled radiographs); their ground truth must have the main one's landmarks.
        outside_as_invisible: keep a labelled point outside its image as invisible (visibility 0) instead of
            failing.
        max_slices: the most slices a stack may have (:data:`cldetection.challenge_io.DEFAULT_MAX_SLICES`).
    """
    mha_file_path, train_gt_path, output_dir = Path(mha_file_path), Path(train_gt_path), Path(output_dir)
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not np.isclose(sum(ratios), 1.0):
        fail(None, f'--ratios must be three non-negative numbers summing to 1, got {list(ratios)}')
    if (folds is None) != (fold is None):
        fail(None, '--folds and --fold go together')
    if folds is not None and (folds < 2 or not 0 <= fold < folds):
        fail(None, f'--fold must be in 0..{folds - 1} and --folds >= 2 (got --folds {folds} --fold {fold})')

    info = read_stack_info(mha_file_path, max_slices)
    gt = load_landmarks(train_gt_path, require_spacing=True)
    missing = _check_against_stack(gt, info.num_slices, allow_missing)
    num_landmarks = gt.num_landmarks
    extras = [_read_extra_training_stack(stack, extra_gt, num_landmarks, allow_missing, max_slices)
              for stack, extra_gt in extra_train]
    slices = list(range(1, info.num_slices + 1))
    if folds is not None:
        if folds > len(slices):
            fail(None, f'--folds {folds} is more than the {len(slices)} images')
        splits = split_by_fold(slices, folds, fold, seed, valid_ratio=ratios[1])
    else:
        splits = split_by_ratio(slices, ratios, seed)
    output = _OutputFolder(output_dir, overwrite)
    try:
        _write_dataset(output, mha_file_path, train_gt_path, info, gt, extras, splits, num_landmarks, seed, folds,
                       fold, ratios, progress, outside_as_invisible)
    except BaseException:
        output.release(roll_back=True)
        raise
    output.release()
    return PreparedDataset(output_dir, splits, num_landmarks, missing, [extra.num_slices for extra, _ in extras])


def _write_dataset(output: _OutputFolder, mha_file_path: Path, train_gt_path: Path, info: StackInfo, gt: LandmarkSet,
                   extras: list[tuple[StackInfo, LandmarkSet]], splits: dict[str, list[int]], num_landmarks: int,
                   seed: int, folds: Optional[int], fold: Optional[int], ratios: Sequence[float], progress: bool,
                   outside_as_invisible: bool) -> None:
    """Write the images and the three COCO files into the claimed ``output`` folder."""
    output_dir = output.path
    image_dir = output_dir / 'images'
    output.mkdir(image_dir)

    split_of = {z: name for name, zs in splits.items() for z in zs}
    documents = {name: {'images': [], 'annotations': []} for name in SPLITS}
    for image, annotation in _coco_entries(mha_file_path, info, gt, image_dir, num_landmarks, progress, output,
                                           outside_as_invisible=outside_as_invisible):
        documents[split_of[image['id']]]['images'].append(image)
        documents[split_of[image['id']]]['annotations'].append(annotation)
    for i, (extra_info, extra_gt) in enumerate(extras, start=1):
        entries = list(_coco_entries(extra_info.path, extra_info, extra_gt, image_dir, num_landmarks, progress, output,
                                     folder=f'extra{i}', id_offset=i * EXTRA_ID_OFFSET,
                                     outside_as_invisible=outside_as_invisible))
        documents['train']['images'] += [image for image, _ in entries]
        documents['train']['annotations'] += [annotation for _, annotation in entries]

    category = {'id': 1, 'name': 'cephalogram', 'supercategory': 'skull',
                'keypoints': landmark_names(num_landmarks), 'skeleton': []}
    source = {'stack': str(mha_file_path), 'ground_truth': str(train_gt_path), 'seed': seed,
              'split': f'fold {fold} of {folds}' if folds else f'ratios {list(ratios)}',
              'extra_train': [[str(stack.path), str(labels.path)] for stack, labels in extras]}
    for name in SPLITS:
        doc = documents[name]
        doc.update(info={'description': f'cldetection step 2: {name} split', **source}, categories=[category])
        write_json_atomic(doc, output.new_file(output_dir / f'{name}.json'), indent=None)
        logger.info('%s: %d images', output_dir / f'{name}.json', len(doc['images']))

