"""SumOfLosses (cldetection/losses.py): the heatmap MSE plus hard keypoint mining, for the global stage's
flat-channel collapse (docs/accuracy_log.md)."""
from __future__ import annotations

import pytest
import torch

import cldetection  # noqa: F401  (registers SumOfLosses)
from mmpose.registry import MODELS

MSE = dict(type='KeypointMSELoss', use_target_weight=True)
OHKM = dict(type='KeypointOHKMMSELoss', use_target_weight=True, topk=2)


def heatmaps(num_keypoints: int = 6, size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets with one Gaussian per channel; predictions equal to them except channel 0, which is flat (0)."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    centres = torch.randint(3, size - 3, (2, num_keypoints, 2), generator=torch.Generator().manual_seed(0))
    target = torch.exp(-((xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2) / 8.0)
    pred = target.clone()
    pred[:, 0] = 0.0
    pred[:, 1:] += 0.01 * torch.randn(pred[:, 1:].shape, generator=torch.Generator().manual_seed(1))
    return pred.requires_grad_(), target.float(), torch.ones(2, num_keypoints)


def test_sum_of_losses_is_the_sum_of_its_parts() -> None:
    pred, target, weights = heatmaps()
    total = MODELS.build(dict(type='SumOfLosses', losses=[MSE, OHKM]))(pred, target, weights)
    parts = MODELS.build(MSE)(pred, target, weights) + MODELS.build(OHKM)(pred, target, weights)
    torch.testing.assert_close(total, parts)


def test_hard_keypoint_mining_pulls_harder_on_a_flat_channel() -> None:
    """The point of the sum: a flat (unlearned) channel gets a larger share of the gradient than with the MSE."""
    def flat_channel_share(loss_cfg: dict) -> float:
        pred, target, weights = heatmaps()
        MODELS.build(loss_cfg)(pred, target, weights).backward()
        norms = pred.grad.flatten(2).norm(dim=2).sum(dim=0)
        return float(norms[0] / norms.sum())

    mse_share = flat_channel_share(MSE)
    sum_share = flat_channel_share(dict(type='SumOfLosses', losses=[MSE, OHKM]))
    assert mse_share > 0.5  # already the largest: its error is the largest
    assert sum_share > mse_share + 0.05


def test_sum_of_losses_needs_a_loss() -> None:
    with pytest.raises(ValueError, match='at least one loss'):
        MODELS.build(dict(type='SumOfLosses', losses=[]))
