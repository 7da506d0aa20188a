"""Question: does training on pseudo-labelled extra images (self-training) help the cl2023 protocol? This makes
those images: pseudo-labelled extra training images for the cl2023 protocol.

The cl2023 protocol has 130 training images per fold, and the measured gain from more labelled images is
small but steady (``docs/accuracy_log.md``, "more training images"). The 107 ISBI 2015 images 001-300 that are not
in the CL-Detection 2023 subset are radiographs of the same kind, but ISBI's labels follow another convention
for a third of the landmarks and cover only 19 of the 38 (``benchmarks.studies.label_agreement``). This labels them
with a trained cl2023 model instead: the model's 38 predicted points become their ground truth, and
``benchmarks.run --extra-train OUT/pseudo-train.json`` trains on them beside the fold's labelled images. The
test fold's images are never among them, and the labelling model must have been trained without them (a model
of the same fold). ::

    python -m benchmarks.studies.pseudo_labels --config DIR/config.py --checkpoint DIR/best.pth --out-dir OUT

Each step goes the user's way: the images -> a challenge stack (``python -m cldetection.stack``, cached as
``<data-dir>/cl2023/extra_stack.mha``) -> step 5's predictor -> a challenge ground-truth JSON
(``OUT/pseudo-gt.json``) -> step 2 (``--ratios 1 0 0``, ``OUT/step2/``) -> ``OUT/pseudo-train.json``: step 2's
train.json with image ids offset by ``EXTRA_ID_OFFSET`` (step 2's offset for its first ``--extra_train`` stack;
disjoint from any cl2023 slice) and absolute image paths, ready to merge with a fold's train.json. It also
prints how far the pseudo-labels of landmarks 1-19 lie from the ISBI senior annotator's points on these images:
for scale, cl2023's own ground truth lies 1.31 mm from them on the 193 shared images.

``--senior-landmarks 1 7 10 ...`` puts the ISBI senior annotator's points in place of the model's for those
landmarks (``OUT/pseudo-senior-gt.json`` goes to step 2): for the seven landmarks where cl2023 kept the senior's
clicks (``benchmarks.studies.label_agreement``: sella, pogonion, gonion, both incisal tips, upper lip, subnasale, all
within 0.5 mm) a human label is better than any model's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cldetection.challenge_io import ground_truth_document, load_landmarks, write_json_atomic
from cldetection.errors import fail, run_cli
from cldetection.metric import radial_errors_mm
from cldetection.prepare import EXTRA_ID_OFFSET

from ..data import (DEFAULT_DATA_DIR, DEFAULT_SHARED_DATA, ISBI_NUM_LANDMARKS, ISBI_SPACING_MM, ISBI_TEST1_IMAGES,
                   ISBI_TRAIN_IMAGES, build_stack, cl2023_image_paths, isbi_landmarks, read_isbi_annotations,
                   run_step2)

LABEL = 'pseudo'
#: How far cl2023's own landmarks 1-19 lie from the ISBI senior annotator's on the 193 shared images
#: (``python -m benchmarks.studies.label_agreement``): the scale for the pseudo-labels' distance.
CL2023_FROM_SENIOR_MM = 1.309


def unlabelled_isbi_images(shared_data: Path) -> list[Path]:
    """ISBI 2015 images 001-300 outside the CL-Detection 2023 subset, in file order (Test2 is not among them)."""
    taken = {p.name for p in cl2023_image_paths(shared_data / 'cl2023_subset')}
    folder = shared_data / 'isbi2015' / 'images'
    paths = [folder / name for name in ISBI_TRAIN_IMAGES + ISBI_TEST1_IMAGES if name not in taken]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        fail(missing[0], 'file not found (ISBI 2015 images 001-300 are expected)')
    return paths


def offset_training_file(step2_train: Path, out: Path, offset: int = EXTRA_ID_OFFSET, label: str = LABEL) -> Path:
    """Step 2's ``train.json`` with ids moved by ``offset`` and image paths made absolute (``out``), so that
    :func:`benchmarks.data.merge_training_annotations` can put it beside another step 2 run's images."""
    document = json.loads(step2_train.read_text())
    images_dir = step2_train.parent / 'images'
    for img in document['images']:
        img['id'] = int(img['id']) + offset
        img['file_name'] = str((images_dir / Path(img['file_name']).name).resolve())
    for ann in document['annotations']:
        ann['id'] = int(ann['id']) + offset
        ann['image_id'] = int(ann['image_id']) + offset
    document['info'] = {**document.get('info', {}), 'label': label,
                        'description': f'{label} labels of {len(document["images"])} images ({step2_train})'}
    write_json_atomic(document, out)
    return out


def distance_to_isbi_senior(points: dict[int, np.ndarray], images: Sequence[Path], csv_path: Path) -> np.ndarray:
    """Radial distances (mm, images x 19) of the predicted landmarks 1-19 from the ISBI senior annotator's."""
    annotations = read_isbi_annotations(csv_path)
    rows = []
    for z in sorted(points):
        senior = isbi_landmarks(annotations[images[z - 1].name], 'senior')
        rows.append(radial_errors_mm(np.asarray(points[z])[:ISBI_NUM_LANDMARKS], senior, ISBI_SPACING_MM))
    return np.stack(rows)


def senior_points_for(model: np.ndarray, senior: np.ndarray, landmarks: Sequence[int]) -> np.ndarray:
    """Landmarks 1-19 of one image (``19 x 2`` pixels): the ISBI senior annotator's points for ``landmarks``
    (numbers 1-19), the model's for the others."""
    fused = np.array(model, dtype=np.float64)
    rows = np.asarray(landmarks, dtype=int) - 1
    fused[rows] = np.asarray(senior, dtype=np.float64)[rows]
    return fused


def senior_gated_points(model: np.ndarray, senior: np.ndarray, gate_mm: float, spacing: float) -> np.ndarray:
    """Landmarks 1-19 of one image (``19 x 2`` pixels): the ISBI senior annotator's point where the model's lies
    within ``gate_mm`` of it, the model's elsewhere.

    Why: cl2023 kept the senior's click for 62 % of these points and re-annotated the rest
    (``benchmarks.studies.label_agreement``). A human click is exact where it was kept; where the model agrees with the
    senior, the senior's click was most likely kept; where it disagrees, the point was likely re-annotated (or
    the model is wrong) and the model's estimate is the better guess. ``benchmarks.studies.label_fusion`` measures the
    gate on images with cl2023 ground truth.
    """
    model = np.asarray(model, dtype=np.float64)
    senior = np.asarray(senior, dtype=np.float64)
    agree = radial_errors_mm(model, senior, spacing) <= gate_mm
    return np.where(agree[:, None], senior, model)


def _fused_with_senior(pseudo_gt: Path, out: Path, images: Sequence[Path], csv_path: Path,
                       fuse: Callable[[np.ndarray, np.ndarray, float], np.ndarray]) -> tuple[Path, float]:
    """``pseudo_gt`` with landmarks 1-19 of each slice ``z`` (image ``images[z - 1]``) replaced by
    ``fuse(model 19 x 2, senior 19 x 2, spacing)``, written to ``out``; returns it and the share of points 1-19
    that are the senior's. Landmarks 20-38 and every scale as in ``pseudo_gt``."""
    labels = load_landmarks(pseudo_gt)
    annotations = read_isbi_annotations(csv_path)
    numbers = range(1, ISBI_NUM_LANDMARKS + 1)
    points, taken = {}, []
    for z in labels.slices:
        senior = isbi_landmarks(annotations[images[z - 1].name], 'senior')
        model = np.array([labels.points[z][k] for k in numbers], dtype=np.float64)
        fused = fuse(model, senior, labels.spacing[z])
        taken.append(np.all(fused == senior, axis=1))
        points[z] = {**labels.points[z], **{k: (float(fused[k - 1, 0]), float(fused[k - 1, 1])) for k in numbers}}
    return write_json_atomic(ground_truth_document(points, labels.spacing), out), float(np.mean(taken))


def with_senior_points(pseudo_gt: Path, out: Path, images: Sequence[Path], csv_path: Path,
                       landmarks: Sequence[int]) -> Path:
    """``pseudo_gt`` with the ISBI senior annotator's points for ``landmarks`` (numbers 1-19), written to ``out``;
    slice ``z`` is ``images[z - 1]``. Every other point, and every scale, as in ``pseudo_gt``."""
    return _fused_with_senior(pseudo_gt, out, images, csv_path,
                              lambda model, senior, _: senior_points_for(model, senior, landmarks))[0]


def with_gated_senior_points(pseudo_gt: Path, out: Path, images: Sequence[Path], csv_path: Path,
                             gate_mm: float) -> tuple[Path, float]:
    """``pseudo_gt`` with landmarks 1-19 fused with the ISBI senior annotator's points by
    :func:`senior_gated_points`, written to ``out``; returns it and the share of points 1-19 taken from the
    senior. Landmarks 20-38 and every scale as in ``pseudo_gt``."""
    return _fused_with_senior(pseudo_gt, out, images, csv_path,
                              lambda model, senior, spacing: senior_gated_points(model, senior, gate_mm, spacing))


def check_senior_landmarks(landmarks: Sequence[int]) -> list[int]:
    """Sorted unique landmark numbers; each must be an ISBI landmark (1-19)."""
    wrong = [k for k in landmarks if not 1 <= k <= ISBI_NUM_LANDMARKS]
    if wrong:
        fail('--senior-landmarks', f'{wrong[0]} is not an ISBI 2015 landmark number (1-{ISBI_NUM_LANDMARKS})')
    return sorted(set(landmarks))


def make_pseudo_labels(config: Path, checkpoint: Path, out_dir: Path, data_dir: Path = DEFAULT_DATA_DIR,
                       shared_data: Path = DEFAULT_SHARED_DATA, echo: bool = False, label: str = LABEL,
                       senior_landmarks: Sequence[int] = (), senior_gate_mm: float | None = None) -> Path:
    """Label the unlabelled ISBI images with a trained cl2023 model (and the ISBI senior annotator for
    ``senior_landmarks``, or wherever the model agrees with the senior within ``senior_gate_mm``); returns
    ``out_dir/pseudo-train.json``."""
    from cldetection.predict import predict_stack_to_json

    senior_landmarks = check_senior_landmarks(senior_landmarks)
    if senior_gate_mm is not None:
        if senior_landmarks:
            fail('--senior-gate-mm', 'choose either --senior-landmarks or --senior-gate-mm, not both')
        if not (np.isfinite(senior_gate_mm) and senior_gate_mm > 0):
            fail('--senior-gate-mm', f'must be a distance > 0 mm, got {senior_gate_mm}')
    for path in (config, checkpoint):
        if not path.is_file():
            fail(path, 'file not found')
    if out_dir.is_dir() and any(out_dir.iterdir()):
        fail(out_dir, 'is not empty; choose another --out-dir (pseudo-labels belong to one model)')
    out_dir.mkdir(parents=True, exist_ok=True)
    images = unlabelled_isbi_images(shared_data)
    stack = data_dir / 'cl2023' / 'extra_stack.mha'
    build_stack(images, stack, echo)
    gt = out_dir / 'pseudo-gt.json'
    prediction, _ = predict_stack_to_json(config, checkpoint, stack, out_dir / 'prediction.json', progress=echo,
                                          spacing=ISBI_SPACING_MM, pseudo_gt_path=gt)
    csv_path = shared_data / 'isbi2015' / 'landmarks.csv'
    if senior_landmarks:
        gt = with_senior_points(gt, out_dir / 'pseudo-senior-gt.json', images, csv_path, senior_landmarks)
    taken = None
    if senior_gate_mm is not None:
        gt, taken = with_gated_senior_points(gt, out_dir / 'pseudo-gated-gt.json', images, csv_path, senior_gate_mm)
    # a label the model put outside its radiograph teaches nothing: kept with visibility 0, as a missing one
    run_step2(stack, gt, out_dir / 'step2', ['--ratios', '1', '0', '0', '--outside-as-invisible'], echo)
    out = offset_training_file(out_dir / 'step2' / 'train.json', out_dir / 'pseudo-train.json', label=label)
    distances = distance_to_isbi_senior(prediction.points, images, csv_path)
    print(f'{len(prediction.points)} images pseudo-labelled by {checkpoint}: {out}')
    print(f'landmarks 1-{ISBI_NUM_LANDMARKS} against the ISBI senior annotator: {distances.mean():.3f} mm mean '
          f'(cl2023 ground truth against the senior on the 193 shared images: {CL2023_FROM_SENIOR_MM:.3f} mm)')
    if senior_landmarks:
        replaced = distances[:, [k - 1 for k in senior_landmarks]].mean(axis=0)
        print(f'the senior annotator\'s points replace the model\'s for landmarks {senior_landmarks} (the model\'s '
              f'lay {", ".join(f"{d:.2f}" for d in replaced)} mm from them): {gt}')
    if taken is not None:
        print(f'landmarks 1-{ISBI_NUM_LANDMARKS}: the senior annotator\'s point where the model lies within '
              f'{senior_gate_mm:g} mm of it ({100 * taken:.1f} % of those points), the model\'s elsewhere: {gt}')
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', type=Path, required=True, help='config of the labelling cl2023 model')
    parser.add_argument('--checkpoint', type=Path, required=True,
                        help='its checkpoint (trained on the same fold the pseudo-labels will train)')
    parser.add_argument('--out-dir', type=Path, required=True, help='new folder for the pseudo-labelled data')
    parser.add_argument('--data-dir', type=Path, default=DEFAULT_DATA_DIR,
                        help='benchmark data cache (the extra stack is built there; default: %(default)s)')
    parser.add_argument('--shared-data', type=Path, default=DEFAULT_SHARED_DATA,
                        help='real data folder (default: %(default)s)')
    parser.add_argument('--label', default=LABEL,
                        help='name of these labels in benchmark rows ("+107 LABEL" in the Budget column), e.g. '
                             'pseudo-r2 for a second round, so that benchmarks.summary keeps them apart '
                             '(default: %(default)s)')
    parser.add_argument('--senior-landmarks', type=int, nargs='+', default=[], metavar='K',
                        help='ISBI landmark numbers (1-19) whose labels come from the ISBI senior annotator instead '
                             'of the model, e.g. 1 7 10 11 12 13 15 (where cl2023 kept the senior\'s points)')
    parser.add_argument('--senior-gate-mm', type=float, default=None, metavar='MM',
                        help='for landmarks 1-19, take the ISBI senior annotator\'s point wherever the model\'s lies '
                             'within MM of it, the model\'s elsewhere (benchmarks.studies.label_fusion measures the '
                             'gate)')
    parser.add_argument('--echo', action='store_true', help='show the steps\' output live')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    make_pseudo_labels(args.config, args.checkpoint, args.out_dir, args.data_dir, args.shared_data, args.echo,
                       args.label, args.senior_landmarks, args.senior_gate_mm)
    return 0


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
