#!/usr/bin/env python
"""Step 5: predict landmarks, on a challenge stack (the challenge's JSON) or on your own radiographs (a report).

    python step5_predict_expected_output.py --config_file CONFIG --load_weight_path CKPT \
        --load_mha_path STACK.mha --save_json_path OUT.json [--device auto] [--engine auto] [--gt_json GT.json]
    python step5_predict_expected_output.py --config_file CONFIG --load_weight_path CKPT \
        --images IMAGE_OR_FOLDER [...] --output-dir OUT [--spacing MM] [--review-threshold 2]

With ``--images`` (PNG, JPEG, BMP, TIFF, DICOM; folders searched recursively) every image gets its landmarks in its
own pixels and mm, each landmark's predicted error (from the checkpoint's calibration, ``python -m
cldetection.calibrate``) and a review flag, the measurements with intervals, an overlay, and the run a
``report.html``: :mod:`cldetection.image_prediction`.

With ``--gt_json`` the prediction is also scored (MRE, SDR) against that ground truth, so any stack can be
evaluated end to end. With ``--analysis`` the eight ISBI 2015 cephalometric measurements (ANB, SNB, SNA, ODI,
APDI, FHI, FMA, MW) and their classes of every slice are written to ``<json stem>_analysis.csv`` beside the
JSON (replaced only with ``--overwrite``, like the JSON). On a CPU, ``--engine auto`` runs a cascade's networks in
ONNX Runtime (exported once, cached in ``<weights>.onnx/`` beside the weights); ``--engine pytorch`` never exports.
Build a stack from your own images with ``python -m cldetection.stack``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import cldetection  # noqa: F401  (compatibility fixes + registrations before anything imports mmpose)
from cldetection.challenge_io import DEFAULT_MAX_SLICES
from cldetection.errors import fail, run_cli
from cldetection.image_prediction import DEFAULT_REVIEW_THRESHOLD_MM, predict_image_files
from cldetection.predict import CHALLENGE_SPACING_MM, add_model_arguments, analysis_csv_path, metrics_report, \
    predict_stack_to_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Predict landmarks. With --load_mha_path: every slice of a challenge stack (.mha), written as the '
                    'challenge prediction JSON (points ordered by slice then landmark, x/y in stack pixels, z the '
                    '1-based slice); with --gt_json, also print MRE and SDR against that ground truth. With --images: '
                    'your own radiographs (PNG, JPEG, BMP, TIFF, DICOM), each with its landmarks, predicted errors, '
                    'review flags, measurements with intervals and an overlay, and a report.html of the run.')
    parser.add_argument('--config_file', type=Path, required=True, help='MMPose config the model was trained with')
    parser.add_argument('--load_weight_path', type=Path, required=True, help='checkpoint (.pth) from step 3')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--load_mha_path', type=Path, help='the stack to predict (.mha); needs --save_json_path')
    source.add_argument('--images', type=Path, nargs='+', metavar='PATH',
                        help='image files or folders (searched recursively) to predict; needs --output-dir')
    parser.add_argument('--save_json_path', type=Path, default=None, help='prediction JSON to write (a stack)')
    parser.add_argument('--output-dir', '--output_dir', type=Path, default=None,
                        help='where --images writes <stem>.csv, <stem>.json, <stem>_overlay.png, measurements.csv '
                             'and report.html')
    parser.add_argument('--review-threshold', type=float, default=DEFAULT_REVIEW_THRESHOLD_MM, metavar='MM',
                        help='--images: flag a landmark for review when its predicted error exceeds this '
                             '(default: %(default)s mm); points outside the image are always flagged')
    parser.add_argument('--calibration', type=Path, default=None,
                        help='--images: the error calibration to use (default: <weights>.calibration.json beside '
                             'the weights, made by python -m cldetection.calibrate)')
    parser.add_argument('--gt_json', type=Path, default=None,
                        help='ground truth of (some of) the stack\'s slices, in the train-gt.json layout with '
                             '"scale": print MRE / SDR of the prediction against it')
    parser.add_argument('--analysis', action='store_true',
                        help='also write the cephalometric measurements and classes of every slice to '
                             '<json stem>_analysis.csv beside the JSON (needs the 19 ISBI landmarks)')
    parser.add_argument('--spacing', type=float, default=None, metavar='MM',
                        help='mm per pixel. --images: for images whose file gives none (a DICOM\'s own spacing '
                             'wins); without it their millimetre outputs are left empty. A stack: for the analysis\'s '
                             f'MW and the pseudo ground truth\'s "scale" (default {CHALLENGE_SPACING_MM}, the '
                             'challenge\'s; slices of --gt_json use its "scale")')
    parser.add_argument('--save_pseudo_gt_path', '--save-pseudo-gt-path', type=Path, default=None,
                        help='also write the prediction as ground truth (train-gt.json layout, "scale" as for '
                             '--analysis) to this file, to train on unlabelled radiographs with step 2 '
                             '--extra_train (self-training; see docs/howto/self-training.md)')
    add_model_arguments(parser)
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing outputs: --save_json_path (and with --analysis its CSV, with '
                             '--save_pseudo_gt_path that file), or the files --images writes in --output-dir')
    parser.add_argument('--max-slices', type=int, default=DEFAULT_MAX_SLICES, metavar='N',
                        help='the most slices the stack may have (default: %(default)s)')
    return parser


def predict_images_main(args: argparse.Namespace) -> int:
    if args.output_dir is None:
        fail(None, '--images needs --output-dir')
    stack_only = [flag for flag, value in (('--save_json_path', args.save_json_path), ('--gt_json', args.gt_json),
                                           ('--analysis', args.analysis),
                                           ('--save_pseudo_gt_path', args.save_pseudo_gt_path)) if value]
    if stack_only:
        fail(None, f'{stack_only[0]} is for a stack (--load_mha_path); --images writes its outputs to --output-dir')
    run = predict_image_files(args.config_file, args.load_weight_path, args.images, args.output_dir,
                              spacing_mm=args.spacing, device=args.device, engine=args.engine,
                              review_threshold_mm=args.review_threshold, calibration_file=args.calibration,
                              overwrite=args.overwrite)
    flagged = sum(p['review'] for r in run.results for p in r['landmarks'])
    print(f'wrote {args.output_dir}: {len(run.results)} images ({run.seconds_per_image:.3f} s per image, model load '
          f'excluded), {flagged} landmarks to review; report: {args.output_dir / "report.html"}')
    if run.failures:
        print(f'error: {len(run.failures)} of {len(run.failures) + len(run.results)} images failed:', file=sys.stderr)
        for line in run.failures:
            print(f'  {line}', file=sys.stderr)
        return 2
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.images is not None:
        return predict_images_main(args)
    if args.save_json_path is None:
        fail(None, '--load_mha_path needs --save_json_path')
    prediction, metrics = predict_stack_to_json(
        args.config_file, args.load_weight_path, args.load_mha_path, args.save_json_path, device=args.device,
        batch_size=args.batch_size, engine=args.engine, gt_json=args.gt_json, overwrite=args.overwrite,
        analysis=args.analysis, spacing=CHALLENGE_SPACING_MM if args.spacing is None else args.spacing,
        pseudo_gt_path=args.save_pseudo_gt_path,
        max_slices=args.max_slices)
    print(f'wrote {args.save_json_path}: {len(prediction.points)} slices, '
          f'{prediction.seconds_per_slice:.3f} s per slice (model load excluded)')
    if args.analysis:
        print(f'wrote {analysis_csv_path(args.save_json_path)}: cephalometric measurements of every slice')
    if args.save_pseudo_gt_path is not None:
        print(f'wrote {args.save_pseudo_gt_path}: the prediction as ground truth (for step 2 --extra_train)')
    if metrics is not None:
        print(metrics_report(metrics))
    return 0


if __name__ == '__main__':
    run_cli(main)
