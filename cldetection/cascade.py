"""Coarse-to-fine landmark detection: a global stage on the downscaled radiograph, a local stage on patches.

``CascadeLandmarkEstimator`` is an MMPose ``TopdownPoseEstimator``: its backbone and head are the **global stage**
(the whole radiograph, area-downscaled by :class:`cldetection.transforms.AntiAliasTopdownAffine`, in; one heatmap
per landmark out). Its ``local`` attribute is the **local stage** (:class:`cldetection.patch_stage.PatchStage`),
which refines every landmark on a small high-resolution patch centred on the global estimate. One model, one
config, one checkpoint: step 3 trains both stages together; step 4, step 5 and the grand-challenge container
predict with the cascade through MMPose's ordinary ``test_step``; at prediction both stages' networks can run in
an inference engine instead of PyTorch (:meth:`CascadeLandmarkEstimator.set_engine`,
:mod:`cldetection.inference_engine`).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from mmengine.structures import PixelData
from mmpose.models.pose_estimators import TopdownPoseEstimator
from mmpose.models.utils.tta import flip_heatmaps
from mmpose.registry import MODELS

from .patch_stage import PatchStage
from .precision import phase_precisions, run_backbone

if TYPE_CHECKING:
    from .inference_engine import InferenceEngine

#: Checkpoints written before 2026-12-07 name the local stage's modules ``refine_backbone`` and ``refine_head``.
_LEGACY_LOCAL_KEY = re.compile(r'(^|\.)refine_(backbone|head)\.')


def rename_legacy_keys(state_dict: dict) -> dict:
    """A state dict with the local stage's old parameter names (``refine_backbone.*``, ``refine_head.*``) under
    today's (``local.backbone.*``, ``local.head.*``), so checkpoints of earlier versions still load."""
    return {_LEGACY_LOCAL_KEY.sub(r'\1local.\2.', key): value for key, value in state_dict.items()}


@MODELS.register_module()
class CascadeLandmarkEstimator(TopdownPoseEstimator):
    """Global heatmap stage (MMPose top-down: ``backbone``, ``neck``, ``head``) + a shared local patch stage.

    Args:
        local: the local stage, :class:`cldetection.patch_stage.PatchStage`'s arguments::

            dict(backbone=..., head=...,       # an MMPose backbone and heatmap head (out_channels = K); the
                                               # head's decoder is the patch codec (e.g. UDP)
                 patch_size=(128, 128),        # patch (w, h) in pixels = the codec's input_size
                 pixel_scale=2.0,              # radiograph pixels per patch pixel (a multiple of the factor
                                               # of KeepSourceImage)
                 train=dict(patches_per_image=8, jitter_mm=2.5, max_offset=0.35, rotate_deg=10.0,
                            scale_range=(0.9, 1.1), intensity=dict(prob=0.5), loss_weight=1.0),
                 test=dict(iterations=1, shift=0.0))

        channels_last: keep the backbones' weights channels-last (NHWC), faster with oneDNN on a CPU (see
            :mod:`cldetection.precision`); the same arithmetic, the same checkpoints.
        precision: ``'fp32'``, ``'bf16'`` (the backbones in bfloat16 autocast; heads, losses and decoding stay
            float32) or ``'auto'`` (bf16 where the hardware multiplies it: a CPU with AVX512-BF16 or AMX, a CUDA
            device with bfloat16; else fp32), or ``dict(train=..., test=...)`` to set the two phases apart.
        test_cfg: MMPose's, plus ``local`` (default True): False returns the global stage's estimates alone.
        Other arguments: as :class:`mmpose.models.TopdownPoseEstimator`.

    Predictions carry ``keypoints`` (the local stage's), ``coarse_keypoints`` (the global stage's, where the local
    stage started), ``keypoint_scores`` (the global stage's heatmap peaks), and the local stage's ``local_scores``
    (heatmap peaks) and ``local_spread`` (heatmap spread in image pixels): the raw signals from which
    :mod:`cldetection.confidence` predicts each landmark's error.
    """

    def __init__(self, backbone: dict, head: dict, local: Optional[dict] = None, neck: Optional[dict] = None,
                 channels_last: bool = True, precision: str | dict = 'fp32',
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None,
                 metainfo: Optional[dict] = None, **unknown) -> None:
        if unknown or local is None:  # configs of earlier versions: say what to change, not a TypeError
            raise ValueError(f'CascadeLandmarkEstimator: unknown arguments {sorted(unknown)}; the local stage is '
                             "model.local (was model.refine); the middle stage was removed (docs/reference/configs.md)"
                             if unknown else 'CascadeLandmarkEstimator: model.local (the local stage) is missing')
        super().__init__(backbone=backbone, neck=neck, head=head, train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg, metainfo=metainfo)
        #: {'train': p, 'test': p} (see :mod:`cldetection.precision`), shared with the local stage and read at every
        #: forward (the phase from ``self.training``), so it can be changed on a loaded model (in place)
        self.precision = phase_precisions(precision)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self.local = PatchStage(**local, mean=self.data_preprocessor.mean, std=self.data_preprocessor.std,
                                precision=self.precision, channels_last=self.channels_last)
        self._register_load_state_dict_pre_hook(self._rename_legacy_keys)
        #: runs both stages' networks at prediction when set (:meth:`set_engine`); PyTorch when ``None``
        self.engine: Optional[InferenceEngine] = None

    def set_engine(self, engine: Optional[InferenceEngine]) -> None:
        """Predict through ``engine``'s sessions of the two networks (:func:`cldetection.inference_engine.
        load_engine`), or through PyTorch again with ``None``. Training always runs PyTorch."""
        self.engine = engine
        self.local.engine = None if engine is None else engine.local_network

    @staticmethod
    def _rename_legacy_keys(state_dict: dict, prefix: str, *args) -> None:
        renamed = rename_legacy_keys({key[len(prefix):]: key for key in state_dict if key.startswith(prefix)})
        for new, old in renamed.items():
            if prefix + new != old:
                state_dict[prefix + new] = state_dict.pop(old)

    def extract_feat(self, inputs: torch.Tensor) -> tuple:
        phase = 'train' if self.training else 'test'
        features = run_backbone(self.backbone, inputs, self.precision[phase], self.channels_last)
        if self.with_neck:
            features = self.neck(features)
        return features

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict:
        losses = super().loss(inputs, data_samples)
        local_loss = self.local.loss(data_samples)
        if local_loss is not None:
            losses['loss_local'] = local_loss
        return losses

    @staticmethod
    def starting_points(keypoints: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
        """The global stage's estimates as the local stage starts from them: on the image. Its sub-pixel fit can
        diverge too (a flat heatmap), so non-finite points go to the corner and every point is clipped."""
        height, width = image_shape[:2]
        coarse = np.asarray(keypoints, dtype=np.float64)
        return np.where(np.isfinite(coarse), coarse, 0.0).clip(0, [width - 1, height - 1])

    def global_heatmaps(self, inputs: torch.Tensor) -> torch.Tensor:
        """The global stage's heatmaps (``N x K x h x w``) of normalised images: the engine's when one is set."""
        if self.engine is not None and not self.training:
            return self.engine.global_network(inputs)
        return self.head.forward(self.extract_feat(inputs))

    def predict_global(self, inputs: torch.Tensor, data_samples: list) -> list:
        """The global stage's estimates: MMPose's top-down prediction; with an engine set, the same steps (flip test,
        ``output_heatmaps``) on the engine's heatmaps, as ``TopdownPoseEstimator.predict`` and the heatmap head's
        ``predict`` take them on the PyTorch network's."""
        if self.engine is None or self.training:
            return super().predict(inputs, data_samples)
        heatmaps = self.global_heatmaps(inputs)
        if self.test_cfg.get('flip_test', False):
            flipped = flip_heatmaps(self.global_heatmaps(inputs.flip(-1)),
                                    flip_mode=self.test_cfg.get('flip_mode', 'heatmap'),
                                    flip_indices=data_samples[0].metainfo['flip_indices'],
                                    shift_heatmap=self.test_cfg.get('shift_heatmap', False))
            heatmaps = (heatmaps + flipped) * 0.5
        fields = [PixelData(heatmaps=h) for h in heatmaps.detach()] if self.test_cfg.get('output_heatmaps') else None
        return self.add_pred_to_datasample(self.head.decode(heatmaps), fields, data_samples)

    def predict(self, inputs: torch.Tensor, data_samples: list) -> list:
        results = self.predict_global(inputs, data_samples)
        if not self.test_cfg.get('local', True):
            return results
        for sample in results:
            meta = sample.metainfo
            if 'source_img' not in meta:
                raise KeyError('CascadeLandmarkEstimator needs the source image: put KeepSourceImage before '
                               'TopdownAffine in the test pipeline')
            pred = sample.pred_instances
            coarse = self.starting_points(pred.keypoints, meta['ori_shape'])
            refined, scores, spread = zip(*(self.local.refine(points, meta['source_img'], int(meta['source_factor']))
                                            for points in coarse))
            pred.coarse_keypoints = coarse.astype(np.float32)
            pred.keypoints = np.stack(refined).astype(np.float32)
            pred.local_scores = np.stack(scores).astype(np.float32)
            pred.local_spread = np.stack(spread).astype(np.float32)
        return results


__all__ = ('CascadeLandmarkEstimator', 'rename_legacy_keys')
