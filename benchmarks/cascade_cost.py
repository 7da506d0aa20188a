"""Cost of each stage of a cascade config: training step and inference, per image, on this machine.

    python -m benchmarks.cascade_cost [CONFIG] [--num-landmarks 19] [--repeats 5]

Builds the model of ``CONFIG`` (default: the CPU cascade) with random weights (weights do not change the cost)
and times, on random inputs of the config's sizes:

* training: one optimiser step of the global stage alone (batch of the config, forward + backward + Adam), and
  of the local stage alone (``patches_per_image`` patches per image of the batch), per image;
* inference: the global stage on one image, and the local stage on the ``K`` patches of one image.

It prints the parameter and FLOP-free figures a user needs to size a schedule: seconds per training image of
each stage and milliseconds per predicted image of each stage. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / 'cldetection_configs' / 'cascade_hrnet-s_cpu.py'


def _seconds(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up: allocations, MKL-DNN primitive selection
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


def measure(config: Path, num_landmarks: int, repeats: int) -> dict[str, float]:
    import cldetection  # noqa: F401  (registers the cascade)
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config

    init_default_scope('mmpose')
    cfg = load_config(config, {'num_landmarks': num_landmarks, 'pretrained': None})
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'refine_backbone'):
        raise SystemExit(f'{config}: not a cascade (no refine stage)')
    batch = int(cfg.train_dataloader.batch_size)
    width, height = cfg.codec['input_size']
    patch_w, patch_h = model.patch_size
    patches = batch * int(model.refine_train['patches_per_image'])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_global() -> None:
        out = model.head.forward(model.backbone(torch.randn(batch, 3, height, width)))
        optimizer.zero_grad()
        out.pow(2).mean().backward()
        optimizer.step()

    def train_local() -> None:
        out = model.refine_head.forward(model.refine_backbone(torch.randn(patches, 3, patch_h, patch_w)))
        optimizer.zero_grad()
        out.pow(2).mean().backward()
        optimizer.step()

    model.train()
    result = {'train_global_s_per_image': _seconds(train_global, repeats) / batch,
              'train_local_s_per_image': _seconds(train_local, repeats) / batch}
    model.eval()
    with torch.no_grad():
        result['infer_global_ms_per_image'] = 1000 * _seconds(
            lambda: model.head.forward(model.backbone(torch.randn(1, 3, height, width))), repeats)
        result['infer_local_ms_per_image'] = 1000 * _seconds(
            lambda: model.refine_head.forward(model.refine_backbone(torch.randn(num_landmarks, 3, patch_h, patch_w))),
            repeats)
    result['parameters_global_M'] = sum(p.numel() for n, p in model.named_parameters()
                                        if not n.startswith('refine_')) / 1e6
    result['parameters_local_M'] = sum(p.numel() for n, p in model.named_parameters() if n.startswith('refine_')) / 1e6
    result.update(batch=batch, patches_per_image=int(model.refine_train['patches_per_image']),
                  threads=torch.get_num_threads())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='Time the global and local stage of a cascade config (training '
                                                 'step and inference per image) on random inputs.')
    parser.add_argument('config', nargs='?', type=Path, default=DEFAULT_CONFIG,
                        help='cascade config (default: %(default)s)')
    parser.add_argument('--num-landmarks', type=int, default=19, help='K (default: %(default)s; 38 for CL-Detection)')
    parser.add_argument('--repeats', type=int, default=5, help='timed repetitions (default: %(default)s)')
    args = parser.parse_args(argv)
    result = measure(args.config, args.num_landmarks, args.repeats)
    print(f'{args.config.name}, K={args.num_landmarks}, {result["threads"]} threads: '
          f'parameters global {result["parameters_global_M"]:.2f} M + local {result["parameters_local_M"]:.2f} M')
    print(f'training, per image: global {result["train_global_s_per_image"]:.3f} s + local '
          f'{result["train_local_s_per_image"]:.3f} s ({result["patches_per_image"]} patches per image, batch '
          f'{result["batch"]})')
    print(f'inference, per image: global {result["infer_global_ms_per_image"]:.0f} ms + local '
          f'{result["infer_local_ms_per_image"]:.0f} ms ({args.num_landmarks} patches)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
