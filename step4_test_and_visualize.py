"""Step 4: test a trained checkpoint on one split; print MRE and SDR, write metrics, CSVs, plots and overlays.

Examples::

    python step4_test_and_visualize.py cldetection_configs/cascade_hrnet-s_cpu.py \\
        work_dirs/cascade_hrnet-s_cpu/best_MRE_epoch_60.pth --cfg-options data_root=data/cl2023_coco \\
        --out-dir work_dirs/eval_test --show-dir work_dirs/eval_test/overlays

Writes to --out-dir: metrics.json (MRE, MRE_SD, SDR 2.0/2.5/3.0/4.0mm), per_landmark.csv, per_image.csv
(each landmark's radial error in mm), per_landmark_mre.png and sdr_curve.png, and (19 or more landmarks)
analysis.csv: the eight ISBI 2015 cephalometric measurements (ANB, SNB, SNA, ODI, APDI, FHI, FMA, MW) of each
image from the prediction and the ground truth, with both classes; the share of images whose predicted class
equals the ground truth's is printed per measurement. With --show-dir one overlay per image (ground truth
green, prediction red, error lines yellow, landmark numbers) and analysis/<image>.jpg (the analysis lines and
angles of the prediction, predicted and ground-truth values).
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

import cldetection  # noqa: F401  (compat fixes + registrations before MMPose is used)
from cldetection.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    from cldetection.evaluate import SPLIT_DATALOADERS

    parser = argparse.ArgumentParser(
        description='Test a checkpoint on the train, valid or test split of the prepared dataset: prints the '
                    'MRE ± SD and SDR table and the cephalometric class agreement, and writes metrics, CSVs '
                    '(analysis.csv: measurements and classes), plots and optional overlays.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('Examples::')[1])
    parser.add_argument('config', help='the MMEngine config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='checkpoint (.pth) from step 3, e.g. work_dirs/<config>/best_*.pth')
    parser.add_argument('--split', choices=list(SPLIT_DATALOADERS), default='test',
                        help='which split of the prepared dataset to test (default: test)')
    parser.add_argument('--out-dir', help='folder for metrics.json, the CSVs and plots '
                                          '(default: <checkpoint folder>/eval_<split>)')
    parser.add_argument('--show-dir', help='write one overlay image per tested image into this folder, and '
                                           'one analysis overlay (lines, angles, values) into its analysis/')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. data_root=DIR (reaches every dataloader)')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from cldetection.analysis import format_agreement
    from cldetection.evaluate import evaluate
    from cldetection.metric import format_table

    result = evaluate(args.config, args.checkpoint, split=args.split, out_dir=args.out_dir,
                      show_dir=args.show_dir, cfg_options=args.cfg_options)
    print(format_table(result.metrics))
    if result.analysis_agreement:
        print(format_agreement(result.analysis_agreement, 'class = ground truth'))
    print(f'metrics, CSVs and plots in {result.out_dir}'
          + (f'; {len(result.overlays)} overlays in {args.show_dir}' if args.show_dir else ''))
    return 0


if __name__ == '__main__':
    run_cli(main)
