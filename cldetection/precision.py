"""How the cascade's backbones run on a CPU: memory layout (channels-last), number format (bfloat16), and batch
norms folded into their convolutions for prediction.

The first two are speed settings of :class:`cldetection.cascade.CascadeLandmarkEstimator` (its ``channels_last``
and ``precision`` arguments), the third is step 5's (:class:`cldetection.predict.LandmarkPredictor`); none changes
what the model is, and one checkpoint serves every setting.

* **Channels-last** (NHWC) lets oneDNN run the convolutions without reordering each tensor to its blocked layout
  and back: the same float32 arithmetic, in a different order. On 2 cores (``python -m benchmarks.cascade_cost
  CONFIG --num-landmarks 38``) it halves the local stage: AMD EPYC, inference 195 -> 99 ms per image, training
  0.199 -> 0.111 s per image; Intel Xeon (Sapphire Rapids), the local forward 0.21 -> 0.17 s.
* **bfloat16** autocast runs the backbones' convolutions in bfloat16 (8 bits of mantissa) and keeps the heads,
  losses and the sub-pixel decoding in float32. It is fast only where the CPU multiplies bfloat16 in hardware
  (AVX512-BF16: AMD Zen 4 and later, Intel Cooper Lake; AMX: Intel Sapphire Rapids and later). On the AMD EPYC
  it halves channels-last float32 again (local inference 59 ms, training 0.054 s per image); with those
  instructions masked (``ONEDNN_MAX_CPU_ISA=AVX512_CORE``) it is 1.5 x slower than float32 and on an AVX2-only
  CPU (``ONEDNN_MAX_CPU_ISA=AVX2``) 7 x slower. ``'auto'`` picks it only where the hardware has it
  (docs/accuracy_log.md, "CPU speed settings", has the accuracy each setting gives).
* **Folded batch norms** (prediction only, :func:`fold_batch_norms`): in eval mode a batch norm is a fixed
  per-channel scale and shift, which can be multiplied into the convolution before it, so a network with narrow
  layers (the cascade's HRNets: 24-256 channels) saves one pass over every feature map per convolution. The same
  function up to float rounding; the model can no longer be trained.
"""
from __future__ import annotations

import contextlib
from typing import Mapping

import torch

#: the values of the cascade's ``precision`` argument
PRECISIONS: tuple[str, ...] = ('fp32', 'bf16', 'auto')


def cpu_has_bf16_hardware() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or Intel AMX tiles), as oneDNN needs for
    bfloat16 convolutions to beat float32."""
    for name in ('_is_avx512_bf16_supported', '_is_amx_tile_supported'):  # private in torch 2.x; absent -> no
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:
            continue
    return False


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
    return precision


def phase_precisions(precision: str | Mapping[str, str]) -> dict[str, str]:
    """``{'train': ..., 'test': ...}`` from the cascade's ``precision`` argument: one value for both phases, or a
    mapping with exactly the keys ``train`` (step 3's training iterations) and ``test`` (validation, step 4,
    step 5)."""
    if isinstance(precision, str):
        return {'train': check_precision(precision), 'test': precision}
    if not isinstance(precision, Mapping) or set(precision) != {'train', 'test'}:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)} or dict(train=..., test=...), '
                         f'got {precision!r}')
    return {phase: check_precision(precision[phase]) for phase in ('train', 'test')}


def uses_bf16(precision: str, device: torch.device | str) -> bool:
    """Whether ``precision`` runs the backbones in bfloat16 on ``device``: ``'bf16'`` always, ``'auto'`` on a CPU
    with bfloat16 hardware or a CUDA device that supports bfloat16, ``'fp32'`` never."""
    check_precision(precision)
    if precision != 'auto':
        return precision == 'bf16'
    device = torch.device(device)
    if device.type == 'cpu':
        return cpu_has_bf16_hardware()
    # native bfloat16 only (Ampere and later): with emulation allowed torch says yes on every CUDA device
    return device.type == 'cuda' and torch.cuda.is_bf16_supported(including_emulation=False)


def backbone_autocast(enabled: bool, device: torch.device | str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``enabled``, else nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def float32_features(features: torch.Tensor | tuple | list) -> torch.Tensor | tuple | list:
    """A backbone's output (a tensor or a sequence of them) as contiguous float32: what the heads, losses and
    decoders expect (NumPy and OpenCV take neither bfloat16 nor the channels-last strides)."""
    if isinstance(features, torch.Tensor):
        return features.float().contiguous()
    return type(features)(float32_features(f) for f in features)


def run_backbone(backbone: torch.nn.Module, inputs: torch.Tensor, precision: str, channels_last: bool):
    """``backbone(inputs)`` in the given memory format (``channels_last``: the input made NHWC, the weights are
    already) and precision (``'fp32'``, ``'bf16'`` or ``'auto'``, see :func:`uses_bf16`); the features come back
    contiguous float32 for the heads. The one way the cascade runs a backbone, global or local."""
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with backbone_autocast(uses_bf16(precision, inputs.device), inputs.device):
        features = backbone(inputs)
    return float32_features(features)


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every batch norm that follows a convolution into that convolution (MMCV's ``fuse_conv_bn``: the batch
    norm becomes ``nn.Identity``), in place, for prediction only: the folded model computes what the eval-mode model
    computed, and cannot be trained. Convolutions whose weights were channels-last stay channels-last."""
    from mmcv.cnn import fuse_conv_bn

    if model.training:
        raise ValueError('fold_batch_norms: the model is in training mode; folding uses the running statistics '
                         'of eval mode (call model.eval() first)')
    # the folded weight is the old one times a per-channel factor: an element-wise product, which keeps the memory
    # format, so channels-last weights stay channels-last (tested)
    return fuse_conv_bn(model)


__all__ = ('PRECISIONS', 'backbone_autocast', 'check_precision', 'cpu_has_bf16_hardware', 'float32_features',
           'fold_batch_norms', 'phase_precisions', 'run_backbone', 'uses_bf16')
