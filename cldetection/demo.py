"""``make demo``: the whole pipeline on synthetic data in a few minutes on a CPU.

``python -m cldetection.demo --work-dir work_dirs/demo`` generates a small synthetic challenge dataset, then
runs step 2 (COCO dataset), step 3 (training the tiny CPU config), step 4 (test split: metrics, CSVs,
plots, overlays) and step 5 (the test slices of the stack -> challenge prediction JSON, scored against the
ground truth; it must agree with step 4), calibrates the model's predicted errors on the valid split
(``python -m cldetection.calibrate``), runs step 5 ``--images`` on the test images (landmarks, predicted errors,
review flags, measurements, overlays and ``report.html``) and checks the predicted errors against the real ones,
and compares the model with a mean-shape predictor (every landmark at its mean position in
the training images), scored by the same metric functions on the same test images. Everything stays in the
work dir::

    challenge/   train_stack.mha, train-gt.json          (synthetic challenge data)
    coco/        images/, train.json, valid.json, test.json   (step 2)
    train/       checkpoints and logs                     (step 3)
    eval_test/   metrics.json, per_landmark.csv, per_image.csv, *.png, overlays/   (step 4)
    predictions.json                                      (step 5, test slices)
    review/      <image>.csv/.json/_overlay.png, measurements.csv, report.html   (step 5 --images, test images)
    demo_summary.json

The demo refuses a non-empty work dir; ``--overwrite`` replaces a previous demo's work dir (and nothing else).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .challenge_io import write_json_atomic
from .errors import fail, run_cli
from .metric import radial_errors_mm, summarize_errors

logger = logging.getLogger(__name__)

DEMO_CONFIG = Path(__file__).resolve().parents[1] / 'cldetection_configs' / 'tiny_cpu.py'
DEFAULT_NUM_IMAGES = 60
#: The model must beat the mean shape by at least this factor in MRE for the demo to pass.
REQUIRED_IMPROVEMENT = 3.0
#: Step 5 (stack -> JSON) and step 4 (PNGs -> metric) see the same pixels and box: their MREs must agree.
STEP5_TOLERANCE_MM = 1e-3
#: Written into the work dir so that ``--overwrite`` only ever deletes a folder the demo made.
MARKER_FILE = '.cldetection-demo'


def prepare_work_dir(work_dir: Path, overwrite: bool) -> None:
    """Create ``work_dir``; a non-empty one only with ``overwrite`` and only if a previous demo made it."""
    if work_dir.exists() and not work_dir.is_dir():
        fail(work_dir, 'exists and is not a folder')
    if work_dir.is_dir() and any(work_dir.iterdir()):
        if not overwrite:
            fail(work_dir, 'is not empty; pass --overwrite to replace a previous demo there, or choose another '
                           '--work-dir')
        if not (work_dir / MARKER_FILE).is_file():
            fail(work_dir, f'is not empty and was not made by the demo (no {MARKER_FILE}); not deleting it, '
                           'choose another --work-dir')
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / MARKER_FILE).write_text('made by python -m cldetection.demo; --overwrite may delete this folder\n')


def _coco_landmarks(ann_file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N x K x 2 pixels, N x K visible, N spacings)`` of a step-2 COCO file, in image order."""
    doc = json.loads(ann_file.read_text(encoding='utf-8'))
    spacing = {img['id']: float(img['spacing']) for img in doc['images']}
    anns = sorted(doc['annotations'], key=lambda a: a['image_id'])
    keypoints = np.array([a['keypoints'] for a in anns], dtype=np.float64).reshape(len(anns), -1, 3)
    return keypoints[..., :2], keypoints[..., 2] > 0, np.array([spacing[a['image_id']] for a in anns])


def mean_shape_metrics(train_ann: str | Path, test_ann: str | Path) -> dict[str, float]:
    """MRE / SDR of predicting every landmark at its mean training position (pixels) on the test images."""
    train_xy, train_visible, _ = _coco_landmarks(Path(train_ann))
    weights = train_visible[..., None].astype(np.float64)
    mean_shape = (train_xy * weights).sum(axis=0) / np.maximum(weights.sum(axis=0), 1)
    test_xy, test_visible, spacing = _coco_landmarks(Path(test_ann))
    errors = radial_errors_mm(np.broadcast_to(mean_shape, test_xy.shape), test_xy, spacing)
    return summarize_errors(errors, test_visible)


def review_test_images(config: Path, checkpoint: Path, coco_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Calibrate on the valid split, predict the test images with step 5 ``--images``, and measure how often the
    real error stays within the predicted error (the calibration's coverage, e.g. 90 %, on new images)."""
    from .calibrate import calibrate, read_labelled_images
    from .image_prediction import predict_image_files

    valid, test = read_labelled_images(coco_dir / 'valid.json'), read_labelled_images(coco_dir / 'test.json')
    if len(valid) < 4:  # a tiny demo (the tests'): step 5 without predicted errors
        logger.warning('demo: %d valid images are too few to calibrate on; no predicted errors', len(valid))
        calibration_file, calibration = None, None
    else:
        calibration_file, calibration = calibrate(config, checkpoint, coco_dir / 'valid.json', device='cpu',
                                                  progress=False)
    run = predict_image_files(config, checkpoint, [image.path for image in test], out_dir,
                              spacing_mm=test[0].spacing_mm, device='cpu', progress=False)
    by_image = {Path(result['image']).resolve(): result for result in run.results}
    within, points = 0, 0
    for image in test:
        for point, truth in zip(by_image[image.path.resolve()]['landmarks'], image.keypoints):
            if np.isfinite(truth).all() and point['predicted_error_mm'] is not None:
                error = np.hypot(point['x_px'] - truth[0], point['y_px'] - truth[1]) * image.spacing_mm
                within += error <= point['predicted_error_mm']
                points += 1
    return {'calibration': calibration_file and str(calibration_file),
            'signals': calibration and list(calibration.signals), 'report': str(out_dir / 'report.html'),
            'images': len(run.results), 'flagged_points': sum(p['review'] for r in run.results for p in r['landmarks']),
            'target_coverage': calibration and calibration.coverage, 'test_coverage': within / points if points else None}


def run_demo(work_dir: str | Path, *, num_images: int = DEFAULT_NUM_IMAGES, seed: int = 0, overwrite: bool = False,
             config: str | Path = DEMO_CONFIG, image_size: Optional[tuple[int, int]] = None,
             cfg_options: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Run the demo; return (and write to ``demo_summary.json``) its summary.

    ``image_size`` (content height, width) and ``cfg_options`` exist for the tests, which run a shrunken demo.
    """
    from .evaluate import evaluate
    from .predict import predict_stack_to_json
    from .prepare import prepare_coco_dataset
    from .synthetic import generate_synthetic_dataset
    from .train import best_checkpoint, latest_checkpoint, train

    start = time.perf_counter()
    work_dir = Path(work_dir)
    prepare_work_dir(work_dir, overwrite)
    seconds: dict[str, float] = {}

    def lap(name: str, began: float) -> None:
        seconds[name] = round(time.perf_counter() - began, 1)
        logger.info('demo: %s done in %.1f s', name, seconds[name])

    t = time.perf_counter()
    synthetic_kwargs = {} if image_size is None else {'image_size': image_size}
    stack_path, gt_path = generate_synthetic_dataset(work_dir / 'challenge', num_images=num_images, seed=seed,
                                                     **synthetic_kwargs)
    lap('synthetic data', t)

    t = time.perf_counter()
    coco_dir = work_dir / 'coco'
    prepare_coco_dataset(stack_path, gt_path, coco_dir, seed=seed)
    lap('step2 prepare', t)

    t = time.perf_counter()
    options = {'data_root': str(coco_dir), **(cfg_options or {})}
    train_dir = train(config, work_dir=work_dir / 'train', cfg_options=options, seed=seed, no_pretrained=True)
    checkpoint = best_checkpoint(train_dir) or latest_checkpoint(train_dir)
    if checkpoint is None:
        fail(train_dir, 'training wrote no checkpoint')
    lap('step3 train', t)

    t = time.perf_counter()
    eval_dir = work_dir / 'eval_test'
    result = evaluate(config, checkpoint, split='test', out_dir=eval_dir, show_dir=eval_dir / 'overlays',
                      cfg_options=options)
    lap('step4 test', t)

    # step 5 on the challenge stack itself: predict the test slices and score them against the ground truth.
    # Same pixels, box and pipeline as step 4, so the two MREs must agree (to rounding).
    t = time.perf_counter()
    test_slices = [image['id'] for image in json.loads((coco_dir / 'test.json').read_text())['images']]
    prediction_file = work_dir / 'predictions.json'
    _, step5_metrics = predict_stack_to_json(config, checkpoint, stack_path, prediction_file, device='cpu',
                                             gt_json=gt_path, slices=test_slices, progress=False)
    lap('step5 predict', t)

    t = time.perf_counter()
    review = review_test_images(config, checkpoint, coco_dir, work_dir / 'review')
    lap('calibrate + step5 images', t)

    baseline = mean_shape_metrics(coco_dir / 'train.json', coco_dir / 'test.json')
    model_mre, mean_shape_mre = result.metrics['MRE'], baseline['MRE']
    summary = {
        'model_MRE': model_mre,
        'mean_shape_MRE': mean_shape_mre,
        'improvement': mean_shape_mre / model_mre if model_mre > 0 else float('inf'),
        'required_improvement': REQUIRED_IMPROVEMENT,
        'model_metrics': result.metrics,
        'mean_shape_metrics': baseline,
        'num_images': num_images,
        'config': str(config),
        'checkpoint': str(checkpoint),
        'metrics_file': str(result.files['metrics']),
        'step5_predictions': str(prediction_file),
        'step5_MRE': step5_metrics['MRE'],
        'step5_matches_step4': abs(step5_metrics['MRE'] - model_mre) <= STEP5_TOLERANCE_MM,
        'review': review,
        'seconds': seconds,
        'wall_seconds': round(time.perf_counter() - start, 1),
    }
    summary['passed'] = summary['improvement'] >= REQUIRED_IMPROVEMENT and summary['step5_matches_step4']
    write_json_atomic(summary, work_dir / 'demo_summary.json')
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m cldetection.demo',
        description='Synthetic data -> step 2 -> step 3 (tiny CPU model) -> step 4 -> step 5, all inside --work-dir; '
                    'writes demo_summary.json comparing the model with a mean-shape predictor.')
    parser.add_argument('--work-dir', type=Path, default=Path('work_dirs/demo'),
                        help='output folder (default: work_dirs/demo); must be empty or absent')
    parser.add_argument('--overwrite', action='store_true', help='replace a previous demo in --work-dir')
    parser.add_argument('--num-images', type=int, default=DEFAULT_NUM_IMAGES,
                        help=f'synthetic images, split 75/12.5/12.5 %% (default: {DEFAULT_NUM_IMAGES})')
    parser.add_argument('--seed', type=int, default=0, help='seed for data, split and training (default: 0)')
    args = parser.parse_args(argv)
    summary = run_demo(args.work_dir, num_images=args.num_images, seed=args.seed, overwrite=args.overwrite)
    print(f'demo: model MRE {summary["model_MRE"]:.3f} mm vs mean shape {summary["mean_shape_MRE"]:.3f} mm '
          f'({summary["improvement"]:.1f}x better) in {summary["wall_seconds"]:.0f} s; '
          f'everything is in {args.work_dir}')
    review = summary['review']
    if review['test_coverage'] is not None:
        print(f'demo: predicted errors held the real error for {100 * review["test_coverage"]:.0f} % of the test '
              f'points (calibrated for {100 * review["target_coverage"]:.0f} %); {review["flagged_points"]} points '
              f'flagged for review; report: {review["report"]}')
    if summary['improvement'] < REQUIRED_IMPROVEMENT:
        print(f'demo check failed: the model is not {REQUIRED_IMPROVEMENT:.0f}x better than the mean shape')
    if not summary['step5_matches_step4']:
        print(f'demo check failed: step 5 MRE {summary["step5_MRE"]:.4f} mm differs from step 4\'s')
    if not summary['passed']:
        return 1
    return 0


if __name__ == '__main__':
    run_cli(main)
