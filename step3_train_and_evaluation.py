"""Step 3: train a landmark model with validation every few epochs (MMEngine runner).

Examples::

    python step3_train_and_evaluation.py cldetection_configs/cascade_hrnet-s_cpu.py \\
        --cfg-options data_root=data/cl2023_coco
    python step3_train_and_evaluation.py CONFIG --resume                 # latest checkpoint of the work dir
    python step3_train_and_evaluation.py CONFIG --no-validate            # final model on every image (step 2 --ratios 1 0 0)
    torchrun --nproc_per_node 4 step3_train_and_evaluation.py CONFIG --launcher pytorch   # 4 GPUs
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

import cldetection  # noqa: F401  (compat fixes + registrations before MMPose is used)
from cldetection.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description='Train a cephalometric landmark model (MMEngine runner) with validation; the best checkpoint '
                    'by the metric the config\'s default_hooks.checkpoint.save_best names (validation MRE for the '
                    'cascade and tiny configs: best_MRE_epoch_N.pth; "SDR 2.0mm" for the HRNet-W32/W48 ones) '
                    'and the last checkpoint are kept in the work dir.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('Examples::')[1])
    parser.add_argument('config', help='MMEngine config file, e.g. cldetection_configs/cascade_hrnet-s_cpu.py')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints (default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume training: from CKPT, or without a path from the latest checkpoint in the '
                             'work dir (model, optimiser, LR schedule, epoch and seed are restored)')
    parser.add_argument('--amp', action='store_true', help='mixed-precision training (CUDA GPUs only)')
    parser.add_argument('--no-pretrained', action='store_true',
                        help='do not download ImageNet weights (same as --cfg-options pretrained=None)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. data_root=DIR train_cfg.max_epochs=100 '
                             'pretrained=None; data_root, pretrained and num_landmarks reach every place '
                             'the config uses them')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                        help='"pytorch" when started by torchrun for multi-GPU (or multi-process CPU) training')
    parser.add_argument('--no-validate', action='store_true',
                        help='train without validation, e.g. a final model on every labelled image (step 2 '
                             '--ratios 1 0 0); the last checkpoint is the model (the work dir\'s last_checkpoint '
                             'file names it)')
    parser.add_argument('--seed', type=int, default=None,
                        help='fixed random seed with deterministic algorithms (reproducible runs)')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from cldetection.train import train

    work_dir = train(args.config, work_dir=args.work_dir, resume=args.resume, amp=args.amp,
                     cfg_options=args.cfg_options, launcher=args.launcher, seed=args.seed,
                     no_pretrained=args.no_pretrained, no_validate=args.no_validate)
    print(f'training finished; checkpoints and logs in {work_dir}')
    return 0


if __name__ == '__main__':
    run_cli(main)
