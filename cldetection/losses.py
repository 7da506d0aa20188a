"""Losses registered into MMPose's ``MODELS`` registry.

``SumOfLosses`` exists for one measured failure (docs/accuracy_log.md, "unlearned landmarks"): trained from scratch
with the plain heatmap MSE, the cascade's global stage sometimes leaves one landmark's channel flat. The MSE is
averaged over all K channels, so once the other landmarks are learned, the flat one pulls on the shared
features with a weight of 1/K. Adding MMPose's ``KeypointOHKMMSELoss`` (the mean over each image's top-k hardest
channels) gives that channel a weight of about 1/k on top. MMPose's heads take one loss module, and its own
``CombinedLoss`` is a container without a forward, hence this small sum.
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmpose.registry import MODELS
from torch import nn


@MODELS.register_module()
class SumOfLosses(nn.Module):
    """The sum of several losses that share one call signature, e.g. ``(pred, target, target_weights)``.

    Args:
        losses: configs of the losses; each keeps its own ``loss_weight``.

    Example (a heatmap head's ``loss``)::

        loss=dict(type='SumOfLosses', losses=[
            dict(type='KeypointMSELoss', use_target_weight=True),
            dict(type='KeypointOHKMMSELoss', use_target_weight=True, topk=8)])
    """

    def __init__(self, losses: Sequence[dict]) -> None:
        super().__init__()
        if not losses:
            raise ValueError('SumOfLosses needs at least one loss config')
        self.losses = nn.ModuleList(MODELS.build(cfg) for cfg in losses)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return sum(loss(*args, **kwargs) for loss in self.losses)
