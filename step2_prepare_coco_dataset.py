#!/usr/bin/env python
"""Step 2: convert the challenge stack (.mha) and train-gt.json into an MMPose COCO-style dataset."""
from __future__ import annotations

import argparse
from typing import Sequence

from cldetection.challenge_io import DEFAULT_MAX_SLICES
from cldetection.errors import run_cli
from cldetection.prepare import DEFAULT_RATIOS, prepare_coco_dataset


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write OUT/images/<z>.png (zero padding cropped) and OUT/train.json, valid.json, test.json '
                    '(COCO style, with each image\'s spacing) from a CL-Detection 2023 stack and its ground truth.')
    parser.add_argument('--mha_file_path', required=True, help='challenge stack, e.g. train_stack.mha')
    parser.add_argument('--train_gt_path', required=True, help='ground truth JSON, e.g. train-gt.json')
    parser.add_argument('--output_dir', '--image_save_dir', dest='output_dir', required=True,
                        help='output folder (must be empty or absent unless --overwrite); '
                             '--image_save_dir is the original baseline\'s name for it')
    parser.add_argument('--ratios', type=float, nargs=3, default=DEFAULT_RATIOS, metavar=('TRAIN', 'VALID', 'TEST'),
                        help='random split fractions (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the split (default: %(default)s)')
    parser.add_argument('--folds', type=int, help='k-fold cross-validation: number of folds K')
    parser.add_argument('--fold', type=int, help='k-fold cross-validation: test fold i in 0..K-1 (valid is '
                                                 'VALID ratio of all images taken from the other folds)')
    parser.add_argument('--overwrite', action='store_true',
                        help='write into a non-empty output folder (replaces our files, deletes nothing)')
    parser.add_argument('--allow-missing', '--allow_missing', dest='allow_missing', action='store_true',
                        help='keep images that lack some landmarks, with visibility 0 for those')
    parser.add_argument('--extra_train', '--extra-train', nargs=2, action='append', default=[],
                        metavar=('STACK', 'GT'),
                        help='another stack and its ground truth whose every slice joins the training split only '
                             '(never valid or test), e.g. radiographs labelled by a trained model with step 5 '
                             '--save_pseudo_gt_path (self-training); written as OUT/images/extra<i>/; repeatable')
    parser.add_argument('--outside-as-invisible', '--outside_as_invisible', dest='outside_as_invisible',
                        action='store_true',
                        help='keep a labelled point that lies outside its image (zero padding cropped) with '
                             'visibility 0 instead of stopping')
    parser.add_argument('--max-slices', type=int, default=DEFAULT_MAX_SLICES, metavar='N',
                        help='the most slices a stack may have (default: %(default)s)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = prepare_coco_dataset(args.mha_file_path, args.train_gt_path, args.output_dir, ratios=args.ratios,
                                  seed=args.seed, folds=args.folds, fold=args.fold, overwrite=args.overwrite,
                                  allow_missing=args.allow_missing, extra_train=args.extra_train,
                                  progress=not args.no_progress, outside_as_invisible=args.outside_as_invisible,
                                  max_slices=args.max_slices)
    sizes = ', '.join(f'{name} {len(zs)}' for name, zs in result.splits.items())
    extra = (f' (+ {sum(result.extra_train_images)} extra training images)'
             if result.extra_train_images else '')
    print(f'wrote {result.output_dir}: {result.num_landmarks} landmarks; {sizes} images{extra}')
    return 0


if __name__ == '__main__':
    run_cli(main)
