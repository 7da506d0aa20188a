#!/usr/bin/env python
"""Step 5: predict the landmarks of every slice of a stack and write the challenge prediction JSON.

    python step5_predict_expected_output.py --config_file CONFIG --load_weight_path CKPT \
        --load_mha_path STACK.mha --save_json_path OUT.json [--device auto] [--engine auto] [--gt_json GT.json]

With ``--gt_json`` the prediction is also scored (MRE, SDR) against that ground truth, so any stack can be
evaluated end to end. With ``--analysis`` the eight ISBI 2015 cephalometric measurements (ANB, SNB, SNA, ODI,
APDI, FHI, FMA, MW) and their classes of every slice are written to ``<json stem>_analysis.csv`` beside the
JSON (replaced only with ``--overwrite``, like the JSON). On a CPU, ``--engine auto`` runs a cascade's networks in
ONNX Runtime (exported once, cached in ``<weights>.onnx/`` beside the weights); ``--engine pytorch`` never exports.
Build a stack from your own images with ``python -m cldetection.stack``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import cldetection  # noqa: F401  (compatibility fixes + registrations before anything imports mmpose)
from cldetection.challenge_io import DEFAULT_MAX_SLICES
from cldetection.errors import run_cli
from cldetection.predict import CHALLENGE_SPACING_MM, add_model_arguments, analysis_csv_path, metrics_report, \
    predict_stack_to_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Predict the landmarks of every slice of a challenge stack (.mha) and write the challenge '
                    'prediction JSON (points ordered by slice then landmark, x/y in stack pixels, z the '
                    '1-based slice). With --gt_json, also print MRE and SDR against that ground truth.')
    parser.add_argument('--config_file', type=Path, required=True, help='MMPose config the model was trained with')
    parser.add_argument('--load_weight_path', type=Path, required=True, help='checkpoint (.pth) from step 3')
    parser.add_argument('--load_mha_path', type=Path, required=True, help='the stack to predict (.mha)')
    parser.add_argument('--save_json_path', type=Path, required=True, help='prediction JSON to write')
    parser.add_argument('--gt_json', type=Path, default=None,
                        help='ground truth of (some of) the stack\'s slices, in the train-gt.json layout with '
                             '"scale": print MRE / SDR of the prediction against it')
    parser.add_argument('--analysis', action='store_true',
                        help='also write the cephalometric measurements and classes of every slice to '
                             '<json stem>_analysis.csv beside the JSON (needs the 19 ISBI landmarks)')
    parser.add_argument('--spacing', type=float, default=CHALLENGE_SPACING_MM,
                        help='mm per pixel for the analysis\'s MW and the pseudo ground truth\'s "scale" (default: '
                             '%(default)s, the challenge\'s); '
                             'slices of --gt_json use its "scale"')
    parser.add_argument('--save_pseudo_gt_path', '--save-pseudo-gt-path', type=Path, default=None,
                        help='also write the prediction as ground truth (train-gt.json layout, "scale" as for '
                             '--analysis) to this file, to train on unlabelled radiographs with step 2 '
                             '--extra_train (self-training; see docs/howto/self-training.md)')
    add_model_arguments(parser)
    parser.add_argument('--overwrite', action='store_true',
                        help='replace --save_json_path (and with --analysis its CSV, with '
                             '--save_pseudo_gt_path that file) if it exists')
    parser.add_argument('--max-slices', type=int, default=DEFAULT_MAX_SLICES, metavar='N',
                        help='the most slices the stack may have (default: %(default)s)')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    prediction, metrics = predict_stack_to_json(
        args.config_file, args.load_weight_path, args.load_mha_path, args.save_json_path, device=args.device,
        batch_size=args.batch_size, engine=args.engine, gt_json=args.gt_json, overwrite=args.overwrite,
        analysis=args.analysis, spacing=args.spacing, pseudo_gt_path=args.save_pseudo_gt_path,
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
