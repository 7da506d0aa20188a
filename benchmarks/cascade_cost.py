"""Cost of each stage of a cascade config: training step and inference, per image, on this machine.

    python -m benchmarks.cascade_cost [CONFIG] [--num-landmarks 19] [--repeats 5]

Builds the model of ``CONFIG`` (default: the CPU cascade) with random weights (weights do not change the cost)
and times, on random inputs of the config's sizes:

* training: one optimiser step of the global stage alone (batch of the config, forward + backward + Adam), and
  of the local stage alone (``patches_per_image`` patches per image of the batch), per image; and the NumPy work
  that makes the local stage's training patches and targets (``PatchStage.training_patches``) on a radiograph of
  the challenge's size (1935 x 2400), per image: what moving that work into the loader workers could save;
* inference: the global stage on one image, and the local stage on the ``K`` patches of one image, with the batch
  norms folded into their convolutions as step 5 predicts (``--no-fold-batch-norms``: as step 4 does).

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


def _radiograph_sample(num_landmarks: int = 38, factor: int = 2):
    """A training sample as the cascade's loss sees it: a challenge-size radiograph's source image (reduced
    ``factor`` times, random texture) and ``num_landmarks`` visible landmarks inside it, 0.1 mm per pixel."""
    import numpy as np
    from mmengine.structures import InstanceData
    from mmpose.structures import PoseDataSample

    rng = np.random.default_rng(0)
    width, height = 1935, 2400
    source = rng.integers(0, 256, (height // factor, width // factor), dtype=np.uint8)
    sample = PoseDataSample(metainfo=dict(source_img=source, source_factor=factor, spacing=0.1))
    keypoints = rng.uniform([200, 200], [width - 200, height - 200], (1, num_landmarks, 2))
    sample.gt_instances = InstanceData(keypoints=keypoints, keypoints_visible=np.ones((1, num_landmarks)))
    return sample


def measure(config: Path, num_landmarks: int, repeats: int, fold_batch_norms: bool = True) -> dict[str, float]:
    import cldetection  # noqa: F401  (registers the cascade)
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from cldetection.config_utils import load_config
    from cldetection.precision import fold_batch_norms as fold_into_convolutions

    init_default_scope('mmpose')
    cfg = load_config(config, {'num_landmarks': num_landmarks, 'pretrained': None})
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'local'):
        raise SystemExit(f'{config}: not a cascade (no local stage)')
    local = model.local
    batch = int(cfg.train_dataloader.batch_size)
    width, height = cfg.codec['input_size']
    patch_w, patch_h = local.patch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step(network: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]) -> Callable[[], None]:
        def step() -> None:
            out = network(torch.randn(*shape))
            optimizer.zero_grad()
            out.pow(2).mean().backward()
            optimizer.step()
        return step

    # through the model's own forward methods, so its speed settings (channels-last, precision) apply
    def global_stage(x: torch.Tensor) -> torch.Tensor:
        return model.head.forward(model.extract_feat(x))

    model.train()
    patches = batch * int(local.train_cfg['patches_per_image'])
    result = {'train_global_s_per_image': _seconds(train_step(global_stage, (batch, 3, height, width)), repeats)
              / batch,
              'train_local_s_per_image': _seconds(train_step(local.forward, (patches, 3, patch_h, patch_w)), repeats)
              / batch}
    sample = _radiograph_sample(num_landmarks)
    result['train_local_patches_s_per_image'] = _seconds(lambda: local.training_patches(sample), repeats)
    model.eval()
    # counted before folding, which merges each batch norm's parameters into its convolution
    local_ids = {id(p) for p in local.parameters()}
    result['parameters_global_M'] = sum(p.numel() for p in model.parameters() if id(p) not in local_ids) / 1e6
    result['parameters_local_M'] = sum(p.numel() for p in local.parameters()) / 1e6
    if fold_batch_norms:
        fold_into_convolutions(model)  # as step 5's predictor does
    with torch.no_grad():
        result['infer_global_ms_per_image'] = 1000 * _seconds(
            lambda: global_stage(torch.randn(1, 3, height, width)), repeats)
        result['infer_local_ms_per_image'] = 1000 * _seconds(
            lambda: local.forward(torch.randn(num_landmarks, 3, patch_h, patch_w)), repeats)
    result.update(batch=batch, patches_per_image=int(local.train_cfg['patches_per_image']),
                  precision=' / '.join(f'{phase} {model.precision[phase]}' for phase in ('train', 'test')),
                  channels_last=model.channels_last, batch_norms_folded=fold_batch_norms,
                  threads=torch.get_num_threads())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='Time each stage of a cascade config (training '
                                                 'step and inference per image) on random inputs.')
    parser.add_argument('config', nargs='?', type=Path, default=DEFAULT_CONFIG,
                        help='cascade config (default: %(default)s)')
    parser.add_argument('--num-landmarks', type=int, default=19, help='K (default: %(default)s; 38 for CL-Detection)')
    parser.add_argument('--repeats', type=int, default=5, help='timed repetitions (default: %(default)s)')
    parser.add_argument('--no-fold-batch-norms', dest='fold_batch_norms', action='store_false',
                        help='time inference with the batch norms as trained (step 4) instead of folded into their '
                             'convolutions (step 5)')
    args = parser.parse_args(argv)
    result = measure(args.config, args.num_landmarks, args.repeats, args.fold_batch_norms)
    print(f'{args.config.name}, K={args.num_landmarks}, {result["threads"]} threads, precision {result["precision"]}'
          f'{", channels-last" if result["channels_last"] else ""}: parameters global '
          f'{result["parameters_global_M"]:.2f} M + local {result["parameters_local_M"]:.2f} M')
    print(f'training, per image: global {result["train_global_s_per_image"]:.3f} s + local '
          f'{result["train_local_s_per_image"]:.3f} s ({result["patches_per_image"]} local patches per image, '
          f'batch {result["batch"]}); cutting and encoding those patches (NumPy) '
          f'{1000 * result["train_local_patches_s_per_image"]:.1f} ms')
    print(f'inference, per image: global {result["infer_global_ms_per_image"]:.0f} ms + local '
          f'{result["infer_local_ms_per_image"]:.0f} ms ({args.num_landmarks} patches; batch norms '
          f'{"folded into the convolutions" if result["batch_norms_folded"] else "as trained"})')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
