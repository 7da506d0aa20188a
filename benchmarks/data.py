"""Benchmark data: real X-rays turned into training data through the project's own tools.

Both protocols go the way a user's data goes: images -> challenge stack (``python -m cldetection.stack``) ->
step 2 (``step2_prepare_coco_dataset.py``) -> COCO JSON + PNGs. Everything is built once and cached under the
data folder (default ``benchmarks/work/data``, ignored by git); a later run reuses it.

Protocols
---------
``cl2023``: the 193 CL-Detection 2023 training images that are ISBI 2015 images (``cl2023_subset``), 38
landmarks, official ground truth. 5-fold cross-validation made by step 2 itself (``--folds 5 --fold i --seed
0``): a seeded shuffle of the 193 slices cut into 5 folds of 38-39 images; fold ``i`` is the test set, and
valid is 12.5 % of all images (24) drawn (seed 1) from the other four folds; train is the rest (130-131).
Layout::

    cl2023/train_stack.mha  (+ images.txt: line z = image of slice z)   193 slices, ~4.0 GB
    cl2023/fold<i>/         step 2 output: images/<z>.png, train/valid/test.json   ~0.85 GB each

``isbi2015``: the ISBI 2015 protocol, train on images 001-150, test on Test1 (151-300), 19 landmarks, pixel
spacing 0.1 mm. One ground truth is used for training, model selection and testing alike, chosen by
``ground_truth``: ``senior`` (the official challenge ground truth, the default) or ``mean`` (of the senior and
junior annotators, used by many papers). A model is never scored on a ground truth it was not trained on: a
perfect predictor of the mean scores about 1.18 mm against the senior on Test1, so such a figure compares
with nothing. Step 2 splits one stack by ratios, so the fixed split is made with two stacks: the training stack
(001-150) goes through step 2 with ``--ratios 0.9 0.1 0`` (135 train, 15 held out as valid for model
selection, seed 0), the Test1 stack (151-300) with ``--ratios 0 0 1`` (all 150 test). Test images never reach
training or model selection. Layout (``<gt>`` = senior or mean)::

    isbi2015/train-gt-<gt>.json                        training stack: 150 slices, slice z = image z (removed
                                                       once step 2 has made train_<gt>/; ~2.9 GB each stack)
    isbi2015/test_stack.mha, test-gt-<gt>.json         150 slices, slice z = image 150 + z
    isbi2015/train_<gt>/, test_<gt>/                   step 2 outputs
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from cldetection.challenge_io import ground_truth_document, numbered_points, read_stack_info, write_json_atomic
from cldetection.errors import fail, run_cli
from cldetection.metric import radial_errors_mm, summarize_errors
from cldetection.prepare import split_by_fold

from .process import REPO_ROOT, Measured, python_command, run_measured

logger = logging.getLogger(__name__)

PROTOCOLS: tuple[str, ...] = ('cl2023', 'isbi2015')
DEFAULT_DATA_DIR = REPO_ROOT / 'benchmarks' / 'work' / 'data'
DEFAULT_SHARED_DATA = Path(os.environ.get('CLDETECTION_SHARED_DATA', REPO_ROOT.parent / 'shared' / 'data'))

CL2023_FOLDS = 5
CL2023_SEED = 0
CL2023_VALID_RATIO = 0.125  # step 2's default valid fraction, drawn from the non-test folds
CL2023_NUM_LANDMARKS = 38

ISBI_NUM_LANDMARKS = 19
ISBI_SPACING_MM = 0.1
ISBI_TRAIN_IMAGES = tuple(f'{i:03d}.jpg' for i in range(1, 151))
ISBI_TEST1_IMAGES = tuple(f'{i:03d}.jpg' for i in range(151, 301))
ISBI_TRAIN_RATIOS = (0.9, 0.1, 0.0)  # 135 train + 15 valid (model selection) out of 001-150
ISBI_SEED = 0
ISBI_ANNOTATORS = ('senior', 'junior')
#: Ground truths of the ISBI protocol (train and test alike): the senior annotator (official; the default)
#: and the mean of both annotators.
ISBI_GROUND_TRUTHS = ('senior', 'mean')


@dataclass
class ProtocolData:
    """A protocol's prepared data: step 2 folders per split, and the test stack for step 5 timing."""
    protocol: str
    num_landmarks: int
    train_root: Path  # holds train.json
    valid_root: Path  # holds valid.json
    test_roots: dict[str, Path]  # ground truth name -> folder holding test.json; the first is primary
    test_stack: Path
    test_slices: list[int]  # slices of test_stack that are test images
    split: str  # human description, e.g. "fold 0 of 5" or "Test1"
    builds: dict[str, dict] = field(default_factory=dict)  # measured builds of this call (absent if cached)


# ------------------------------------------------------------------------------------------ ISBI 2015
@dataclass(frozen=True)
class IsbiImage:
    name: str
    split: str
    annotations: dict[str, np.ndarray]  # annotator -> 19 x 2 pixel coordinates


def read_isbi_annotations(csv_path: str | Path) -> dict[str, IsbiImage]:
    """Read ``landmarks.csv``: one row per image and annotator, 19 landmarks as ``<name>_x, <name>_y``."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        fail(csv_path, 'file not found')
    with open(csv_path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        coordinate_columns = [c for c in columns if c.endswith(('_x', '_y'))]
        if not {'image', 'split', 'annotator'} <= set(columns) or len(coordinate_columns) != 2 * ISBI_NUM_LANDMARKS:
            fail(csv_path, f'expected columns image, split, annotator and {ISBI_NUM_LANDMARKS} x/y pairs, '
                           f'found {len(columns)} columns')
        images: dict[str, dict] = {}
        for line, row in enumerate(reader, start=2):
            try:
                xy = np.array([float(row[c]) for c in coordinate_columns], dtype=np.float64).reshape(-1, 2)
            except (TypeError, ValueError):
                fail(csv_path, f'line {line}: a landmark coordinate is not a number')
            entry = images.setdefault(row['image'], {'split': row['split'], 'annotations': {}})
            if row['annotator'] in entry['annotations']:
                fail(csv_path, f'line {line}: image {row["image"]} has two rows for annotator {row["annotator"]}')
            entry['annotations'][row['annotator']] = xy
    for name, entry in images.items():
        lacking = [a for a in ISBI_ANNOTATORS if a not in entry['annotations']]
        if lacking:
            fail(csv_path, f'image {name} has no row for annotator(s) {", ".join(lacking)}')
    return {name: IsbiImage(name, entry['split'], entry['annotations']) for name, entry in images.items()}


def isbi_landmarks(image: IsbiImage, ground_truth: str) -> np.ndarray:
    """19 x 2 ground truth of one image: ``mean`` of the two annotators or ``senior`` alone."""
    if ground_truth == 'mean':
        return np.mean([image.annotations[a] for a in ISBI_ANNOTATORS], axis=0)
    if ground_truth in image.annotations:
        return image.annotations[ground_truth]
    raise ValueError(f'unknown ground truth {ground_truth!r}: use one of {ISBI_GROUND_TRUTHS}')


def isbi_ground_truth_document(annotations: dict[str, IsbiImage], image_names: Sequence[str],
                               ground_truth: str) -> dict:
    """Challenge ground-truth JSON for a stack whose slice ``z`` is ``image_names[z - 1]`` (spacing 0.1 mm)."""
    points, spacing = {}, {}
    for z, name in enumerate(image_names, start=1):
        if name not in annotations:
            raise KeyError(f'image {name} is not in the ISBI annotations')
        xy = isbi_landmarks(annotations[name], ground_truth)
        points[z] = numbered_points(xy)
        spacing[z] = ISBI_SPACING_MM
    return ground_truth_document(points, spacing)


def annotator_disagreement(annotations: dict[str, IsbiImage], image_names: Sequence[str]) -> dict[str, float]:
    """MRE / SDR of the junior annotator scored against the senior one: the floor any model meets."""
    senior = np.stack([annotations[n].annotations['senior'] for n in image_names])
    junior = np.stack([annotations[n].annotations['junior'] for n in image_names])
    return summarize_errors(radial_errors_mm(junior, senior, ISBI_SPACING_MM))


# ------------------------------------------------------------------------------------------ CL 2023
def cl2023_image_paths(subset_dir: str | Path) -> list[Path]:
    """The image of each slice of the CL-Detection 2023 subset (``images.txt``: line z = slice z)."""
    listing = Path(subset_dir) / 'images.txt'
    if not listing.is_file():
        fail(listing, 'file not found (the CL-Detection 2023 subset lists its images here)')
    paths = [(listing.parent / line.strip()).resolve() for line in listing.read_text().splitlines() if line.strip()]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        fail(listing, f'{len(absent)} listed image(s) not found, e.g. {absent[0]}')
    return paths


def cl2023_fold_split(num_images: int, fold: int, folds: int = CL2023_FOLDS,
                      seed: int = CL2023_SEED) -> dict[str, list[int]]:
    """The documented ``cl2023`` split of slices ``1..num_images``: exactly what step 2 writes for
    ``--folds folds --fold fold --seed seed`` (step 2's own function, so the two cannot drift)."""
    if not 0 <= fold < folds:
        raise ValueError(f'fold must be in 0..{folds - 1}, got {fold}')
    return split_by_fold(list(range(1, num_images + 1)), folds, fold, seed, valid_ratio=CL2023_VALID_RATIO)


# ------------------------------------------------------------------------------------- build steps
def _listing_path(stack: Path) -> Path:
    return stack.with_name(stack.stem.replace('_stack', '') + '_images.txt')


def build_stack(image_paths: Sequence[Path], stack: Path, echo: bool = False) -> Measured | None:
    """Build ``stack`` from ``image_paths`` with the project's stack builder, or reuse it.

    The image list is kept next to the stack (``<name>_images.txt``, one file per slice, as the shared
    subset's ``images.txt``); a stack whose list differs is refused rather than silently replaced.
    """
    listing = _listing_path(stack)
    wanted = [str(Path(p).resolve()) for p in image_paths]
    if stack.is_file():
        if not listing.is_file() or listing.read_text().splitlines() != wanted:
            fail(stack, f'exists but was not built from the expected {len(wanted)} images ({listing}); '
                        'move it away or choose another --data-dir')
        read_stack_info(stack)  # a truncated stack is an error, not a cache hit
        return None
    stack.parent.mkdir(parents=True, exist_ok=True)
    measured = run_measured(python_command('-m', 'cldetection.stack', '--images', *wanted, '--out', str(stack)),
                            stack.with_suffix('.build.log'), echo=echo)
    listing.write_text('\n'.join(wanted) + '\n')
    return measured


def _step2_done(output_dir: Path) -> bool:
    return all((output_dir / f'{split}.json').is_file() for split in ('train', 'valid', 'test'))


def run_step2(stack: Path, ground_truth: Path, output_dir: Path, extra_args: Sequence[str] = (),
              echo: bool = False) -> Measured | None:
    """Run step 2 on ``stack`` + ``ground_truth`` into ``output_dir`` (skipped when already complete)."""
    if _step2_done(output_dir):
        return None
    command = python_command(str(REPO_ROOT / 'step2_prepare_coco_dataset.py'), '--mha_file_path', str(stack),
                             '--train_gt_path', str(ground_truth), '--output_dir', str(output_dir),
                             '--no-progress', *extra_args)
    if output_dir.is_dir() and any(output_dir.iterdir()):
        command.append('--overwrite')  # an interrupted earlier step 2 of ours: its files get replaced
    return run_measured(command, output_dir.with_name(output_dir.name + '.step2.log'), echo=echo)


def image_ids(ann_file: Path) -> list[int]:
    """Image ids (= stack slices) of a step 2 COCO JSON."""
    return sorted(int(img['id']) for img in json.loads(ann_file.read_text())['images'])


def merge_training_annotations(files: Sequence[Path], out: Path, split: str) -> Path:
    """One COCO JSON (``out``) holding the images and annotations of ``files``, in order; the first file's
    categories and info are kept (``split`` names the union). For runs that train on more than step 2's train
    split (``benchmarks.run --train-on-valid``, ``--extra-train``). Image ids must be disjoint: files of one
    step 2 run are (ids are stack slices; an overlap would be a step 2 bug), and extra training files
    (:mod:`benchmarks.studies.pseudo_labels`) offset theirs and name their images by absolute paths, which MMPose's
    path join keeps as they are."""
    documents = [json.loads(Path(path).read_text()) for path in files]
    seen: dict[int, Path] = {}
    for path, document in zip(files, documents):
        ids = {img['id'] for img in document['images']}
        shared = sorted(ids & set(seen))
        if shared:
            fail(path, f'shares image ids {shared[:5]} with {seen[shared[0]]}; the splits must be disjoint')
        seen.update(dict.fromkeys(ids, Path(path)))
    first = documents[0]
    merged = {**first, 'images': [img for d in documents for img in d['images']],
              'annotations': [a for d in documents for a in d['annotations']],
              'info': {**first.get('info', {}), 'description': ' + '.join(Path(f).name for f in files),
                       'split': split}}
    write_json_atomic(merged, out)
    return out


def subset_training_annotations(ann_file: Path, out: Path, num_images: int, seed: int = 0) -> Path:
    """``out``: the first ``num_images`` images of ``ann_file`` (a COCO JSON) in a random order drawn with
    ``seed`` from its sorted image ids, with their annotations. Subsets of one file and seed are nested (the 39
    images of a smaller subset are among the 77 of a larger one), so a learning curve compares training sets
    that differ only by the images added (``benchmarks.run --train-images``)."""
    document = json.loads(Path(ann_file).read_text())
    ids = sorted(int(img['id']) for img in document['images'])
    if not 1 <= num_images <= len(ids):
        fail(ann_file, f'has {len(ids)} training images; cannot take a subset of {num_images}')
    order = np.random.RandomState(seed).permutation(len(ids))
    kept = {ids[i] for i in order[:num_images]}
    subset = {**document, 'images': [img for img in document['images'] if int(img['id']) in kept],
              'annotations': [a for a in document['annotations'] if int(a['image_id']) in kept],
              'info': {**document.get('info', {}),
                       'split': f'{document.get("info", {}).get("split", "train")}, {num_images} of {len(ids)} '
                                f'images (subset seed {seed})'}}
    write_json_atomic(subset, out)
    return out


def _record(builds: dict[str, dict], name: str, measured: Measured | None, **extra) -> None:
    if measured is not None:
        builds[name] = {**measured.as_dict(), **extra}


def _save_builds(folder: Path, builds: dict[str, dict]) -> None:
    """Keep every measured build in ``folder/builds.json`` (the build figures of benchmarks/RESULTS.md come from here)."""
    if not builds:
        return
    path = folder / 'builds.json'
    known = json.loads(path.read_text()) if path.is_file() else {}
    write_json_atomic({**known, **builds}, path)


def prepare_cl2023(data_dir: Path, shared_data: Path, fold: int, echo: bool = False) -> ProtocolData:
    """Stack of the 193 CL-Detection 2023 images + step 2 fold ``fold`` of 5."""
    subset = shared_data / 'cl2023_subset'
    ground_truth = subset / 'train-gt.json'
    if not ground_truth.is_file():
        fail(ground_truth, 'file not found (see ../shared/data/README.md)')
    folder = data_dir / 'cl2023'
    stack = folder / 'train_stack.mha'
    images = cl2023_image_paths(subset)
    builds: dict[str, dict] = {}
    _record(builds, 'stack', build_stack(images, stack, echo), slices=len(images))
    fold_dir = folder / f'fold{fold}'
    _record(builds, f'step2_fold{fold}', run_step2(
        stack, ground_truth, fold_dir, ['--folds', str(CL2023_FOLDS), '--fold', str(fold),
                                        '--seed', str(CL2023_SEED)], echo), slices=len(images))
    expected = cl2023_fold_split(len(images), fold)
    for split in ('train', 'valid', 'test'):
        if image_ids(fold_dir / f'{split}.json') != expected[split]:
            fail(fold_dir / f'{split}.json', f'does not hold the documented fold {fold} {split} split; '
                                             'step 2 changed its fold assignment or the folder is stale')
    _save_builds(folder, builds)
    return ProtocolData('cl2023', CL2023_NUM_LANDMARKS, fold_dir, fold_dir, {'official': fold_dir}, stack,
                        expected['test'], f'fold {fold} of {CL2023_FOLDS}', builds)


def prepare_isbi2015(data_dir: Path, shared_data: Path, ground_truth: str = ISBI_GROUND_TRUTHS[0],
                     echo: bool = False) -> ProtocolData:
    """Training stack (001-150) and Test1 stack (151-300) with one ground truth (senior or mean), through step 2."""
    if ground_truth not in ISBI_GROUND_TRUTHS:
        fail(None, f'--ground-truth must be one of {", ".join(ISBI_GROUND_TRUTHS)}, got {ground_truth!r}')
    source = shared_data / 'isbi2015'
    annotations = read_isbi_annotations(source / 'landmarks.csv')
    folder = data_dir / 'isbi2015'
    folder.mkdir(parents=True, exist_ok=True)
    builds: dict[str, dict] = {}
    stacks = {'train': ISBI_TRAIN_IMAGES, 'test': ISBI_TEST1_IMAGES}
    train_root, test_root = folder / f'train_{ground_truth}', folder / f'test_{ground_truth}'
    gt_files = {part: folder / f'{part}-gt-{ground_truth}.json' for part in stacks}
    for part, path in gt_files.items():
        write_json_atomic(isbi_ground_truth_document(annotations, stacks[part], ground_truth), path, indent=None)
    seed = ['--seed', str(ISBI_SEED)]
    for part, names in stacks.items():
        if part == 'train' and _step2_done(train_root):
            continue  # the training stack is only a step on the way to train_<gt>/ (and removed after it)
        paths = [source / 'images' / n for n in names]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            fail(missing[0], 'file not found (ISBI 2015 images 001-300 are expected)')
        _record(builds, f'{part}_stack', build_stack(paths, folder / f'{part}_stack.mha', echo), slices=len(paths))
    if not _step2_done(train_root):
        _record(builds, f'step2_{train_root.name}', run_step2(
            folder / 'train_stack.mha', gt_files['train'], train_root,
            ['--ratios', *map(str, ISBI_TRAIN_RATIOS), *seed], echo), slices=150)
        (folder / 'train_stack.mha').unlink()  # 2.9 GB the benchmark never reads again (the test stack is kept)
    _record(builds, f'step2_{test_root.name}', run_step2(folder / 'test_stack.mha', gt_files['test'], test_root,
                                                         ['--ratios', '0', '0', '1', *seed], echo), slices=150)
    if image_ids(test_root / 'test.json') != list(range(1, 151)):
        fail(test_root / 'test.json', 'does not hold all 150 Test1 images')
    if len(image_ids(train_root / 'train.json')) + len(image_ids(train_root / 'valid.json')) != 150:
        fail(train_root, 'train + valid do not hold the 150 training images')
    _save_builds(folder, builds)
    return ProtocolData('isbi2015', ISBI_NUM_LANDMARKS, train_root, train_root, {ground_truth: test_root},
                        folder / 'test_stack.mha', list(range(1, 151)), 'Test1 (151-300)', builds)


def prepare_protocol(protocol: str, data_dir: str | Path = DEFAULT_DATA_DIR,
                     shared_data: str | Path = DEFAULT_SHARED_DATA, fold: int = 0, echo: bool = False,
                     ground_truth: str = ISBI_GROUND_TRUTHS[0]) -> ProtocolData:
    """Build (or reuse) the data of ``protocol``; ``fold`` only matters for ``cl2023``, ``ground_truth`` only
    for ``isbi2015``."""
    data_dir, shared_data = Path(data_dir), Path(shared_data)
    if protocol == 'cl2023':
        if not 0 <= fold < CL2023_FOLDS:
            fail(None, f'--fold must be in 0..{CL2023_FOLDS - 1}, got {fold}')
        return prepare_cl2023(data_dir, shared_data, fold, echo)
    if protocol == 'isbi2015':
        return prepare_isbi2015(data_dir, shared_data, ground_truth, echo)
    fail(None, f'unknown protocol {protocol!r}; choose one of {", ".join(PROTOCOLS)}')


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Build (or reuse) a benchmark protocol\'s data: stack via '
                                                 'cldetection.stack, then step 2. Prints what was measured.')
    parser.add_argument('--protocol', choices=PROTOCOLS, required=True)
    parser.add_argument('--fold', type=int, nargs='+', default=[0], help='cl2023 fold(s) to build (default: 0)')
    parser.add_argument('--data-dir', type=Path, default=DEFAULT_DATA_DIR, help='cache folder (default: %(default)s)')
    parser.add_argument('--shared-data', type=Path, default=DEFAULT_SHARED_DATA,
                        help='real data folder (default: %(default)s)')
    parser.add_argument('--ground-truth', choices=ISBI_GROUND_TRUTHS, nargs='+', default=[ISBI_GROUND_TRUTHS[0]],
                        help='isbi2015 ground truth(s) to build, for training and testing alike (default: senior, '
                             'the official one)')
    parser.add_argument('--echo', action='store_true', help='show the steps\' output live')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    variants = ([(fold, None) for fold in args.fold] if args.protocol == 'cl2023'
                else [(0, gt) for gt in args.ground_truth])
    for fold, ground_truth in variants:
        data = prepare_protocol(args.protocol, args.data_dir, args.shared_data, fold, args.echo,
                                ground_truth or ISBI_GROUND_TRUTHS[0])
        for name, build in data.builds.items():
            print(f'{data.protocol} {name}: {build["wall_s"]:.1f} s, peak RSS '
                  f'{build["peak_rss_bytes"] / 2 ** 20:.0f} MiB ({build["slices"]} slices)')
        print(f'{data.protocol} {data.split}: ready (train {data.train_root}, test {", ".join(map(str, data.test_roots.values()))})')
    return 0


if __name__ == '__main__':
    run_cli(main)
