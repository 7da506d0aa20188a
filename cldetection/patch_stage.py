"""``PatchStage``: the cascade's local stage, one shared network that refines every landmark on a small patch.

* The patch of landmark ``k`` is an ``h x w`` crop of the radiograph at ``pixel_scale`` radiograph pixels per patch
  pixel (e.g. 128 x 128 at 2 px: 25.6 mm of a 0.1 mm/px image), centred on the point to refine.
* The network predicts a heatmap for *each* landmark (``K`` channels) on every patch and is supervised for every
  landmark inside the patch; the estimate of landmark ``k`` is read from channel ``k`` of its own patch. Sharing
  one network multiplies its training examples by ``K``.
* Training patches are centred on the ground truth moved by a random offset (Gaussian, ``jitter_mm`` per axis, cut
  so the landmark stays inside the patch), standing in for the global stage's error, with a random rotation, scale
  and X-ray intensity change.
* Patches are cut from the *source*: the radiograph in grey, reduced once by area averaging
  (:class:`cldetection.transforms.KeepSourceImage`), and reduced again here when ``pixel_scale`` is a larger
  multiple of that factor, so a patch is a plain resampling with no aliasing.

Why the training patches are cut here, in the main process, and not in the data pipeline (loader workers) as
MMPose's ``GenerateTarget`` makes the global stage's targets: it would buy nothing and cost reproducibility.
Cutting and encoding a training image's 8 patches takes 5.6 ms against 376 ms for the training step of both
networks on that image (``python -m benchmarks.cascade_cost --num-landmarks 38``, 2-core AVX2-only AMD EPYC,
float32), so a worker could take at most 1.5 % off an iteration; and the patches would then draw from the
worker's random stream instead of the main process's, so the default would no longer train the same model for
the same seed (its checkpoints and benchmark rows would stop repeating).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.model import BaseModule
from mmpose.registry import MODELS

from .geometry import area_downscale, cut_patches, from_reduced, patch_to_image, to_reduced
from .precision import run_backbone
from .transforms import RandomXRayIntensity

#: ``train`` settings and their defaults (see :class:`PatchStage`).
TRAIN_DEFAULTS = dict(patches_per_image=8, jitter_mm=2.5, max_offset=0.35, rotate_deg=10.0, scale_range=(0.9, 1.1),
                      intensity=dict(prob=0.5), loss_weight=1.0)
#: ``test`` settings and their defaults (see :class:`PatchStage`).
TEST_DEFAULTS = dict(iterations=1, shift=0.0)


def _settings(name: str, given: Optional[dict], defaults: dict) -> dict:
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        raise ValueError(f'CascadeLandmarkEstimator: unknown local.{name} keys {unknown}; known: {sorted(defaults)}')
    return {**defaults, **(given or {})}


def heatmap_spread(heatmaps: np.ndarray) -> np.ndarray:
    """The root-mean-square distance (heatmap pixels) of each ``h x w`` map's positive mass from its centroid.

    A confident local stage puts one narrow Gaussian on the landmark; a doubtful one spreads its mass over
    several candidates or a ridge (an edge along which the point could slide), and this grows with it. One of the
    candidate signals of a landmark's error (:mod:`cldetection.confidence`).
    """
    mass = np.clip(heatmaps, 0.0, None)
    height, width = mass.shape[-2:]
    ys, xs = np.mgrid[0:height, 0:width]
    total = mass.sum(axis=(-2, -1)) + 1e-12
    cx = (mass * xs).sum(axis=(-2, -1)) / total
    cy = (mass * ys).sum(axis=(-2, -1)) / total
    squared = (xs - cx[..., None, None]) ** 2 + (ys - cy[..., None, None]) ** 2
    return np.sqrt((mass * squared).sum(axis=(-2, -1)) / total)


class PatchStage(BaseModule):
    """The local stage: a backbone and a heatmap head run on patches, with everything that concerns patches.

    Args:
        backbone, head: an MMPose backbone and heatmap head (``out_channels`` = K); the head's ``decoder`` is the
            patch codec (e.g. UDP) and its ``input_size`` must be ``patch_size``.
        patch_size: patch ``(w, h)`` in pixels.
        pixel_scale: radiograph pixels per patch pixel (a multiple of the source's reduction factor).
        train: ``patches_per_image`` (landmarks refined per image and iteration, drawn at random), ``jitter_mm``
            (SD of the patch centre's offset from the truth, per axis), ``max_offset`` (the offset is cut at this
            fraction of the patch side), ``rotate_deg``, ``scale_range``, ``intensity`` (RandomXRayIntensity's
            arguments), ``loss_weight``.
        test: ``iterations`` (refinements, each centred on the previous estimate) and ``shift`` (> 0: four more
            patches moved by ``shift`` x the patch side along +-x and +-y, their estimates averaged).
        mean, std: the model's input normalisation (its data preprocessor's, RGB order).
        precision: ``{'train': p, 'test': p}`` as :func:`cldetection.precision.phase_precisions` returns it.
        channels_last: run the backbone channels-last (its weights are made so here).
    """

    def __init__(self, backbone: dict, head: dict, patch_size: Sequence[int], pixel_scale: float,
                 mean: torch.Tensor, std: torch.Tensor, precision: dict, channels_last: bool,
                 train: Optional[dict] = None, test: Optional[dict] = None) -> None:
        super().__init__(init_cfg=None)
        self.backbone = MODELS.build(backbone)
        self.head = MODELS.build(head)
        self.patch_size = tuple(int(v) for v in patch_size)
        self.pixel_scale = float(pixel_scale)
        self.train_cfg = _settings('train', train, TRAIN_DEFAULTS)
        self.test_cfg = _settings('test', test, TEST_DEFAULTS)
        codec = self.head.decoder
        if codec is None or tuple(codec.input_size) != self.patch_size:
            raise ValueError(f'CascadeLandmarkEstimator: the local head needs a decoder whose input_size is the '
                             f'patch_size {self.patch_size}')
        self.intensity = RandomXRayIntensity(**self.train_cfg['intensity'])
        self.register_buffer('mean', mean.detach().clone(), persistent=False)
        self.register_buffer('std', std.detach().clone(), persistent=False)
        self.precision = precision
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        #: the network in an inference engine, used at prediction when set (the cascade's ``set_engine``)
        self.engine: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    # ------------------------------------------------------------------------------------------- geometry
    def reduction(self, factor: int) -> int:
        """How many times the stage reduces the (``factor``-reduced) source before cutting: the whole part of
        ``pixel_scale / factor``, at least 1 (so a coarse stage cuts from an area-averaged copy, not skipping
        pixels)."""
        return max(1, int(math.floor(self.pixel_scale / factor + 1e-9)))

    def extent(self, factor: int) -> float:
        """Pixels one patch covers of the copy it is cut from (the ``factor``-reduced source, reduced
        :meth:`reduction` times more)."""
        return self.pixel_scale / factor * max(self.patch_size) / self.reduction(factor)

    def cut(self, image: np.ndarray, centers: np.ndarray, extent: float | np.ndarray,
            rotations: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """``P x 1 x h x w`` uint8 patches of ``image`` around ``centers`` (its pixels) covering ``extent`` pixels,
        and their warp matrices (which the heatmap targets follow)."""
        patches, matrices = cut_patches(image, centers, extent, self.patch_size, rotations)
        return patches[:, None], matrices

    # ------------------------------------------------------------------------------------------- network
    def normalise(self, patches: np.ndarray) -> torch.Tensor:
        """``P x 1 x h x w`` uint8 grey patches -> the network's normalised ``P x 3 x h x w`` float input (the grey
        channel repeated, as the global stage sees the grey radiograph)."""
        x = torch.from_numpy(np.ascontiguousarray(patches)).to(self.mean.device, torch.float32)
        return (x.expand(-1, 3, -1, -1) - self.mean) / self.std

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Heatmaps (``P x K x h' x w'``) of normalised patches, in the model's precision and memory format, or the
        engine's when one is set (prediction only)."""
        if self.engine is not None and not self.training:
            return self.engine(inputs)
        phase = 'train' if self.training else 'test'
        return self.head.forward(run_backbone(self.backbone, inputs, self.precision[phase], self.channels_last))

    def decode(self, heatmaps: torch.Tensor, centers: np.ndarray, extent: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Landmark ``k`` read off channel ``k`` of patch ``k`` (patches in landmark order, centred on ``centers``):
        ``K x 2`` pixels of the image the patches were cut from (NaN where lost), the heatmap scores, and the
        heatmaps' spread (:func:`heatmap_spread`, in pixels of that image).

        A flat heatmap (the landmark is not in its patch) makes the sub-pixel fit diverge, to metres away, so such an
        estimate, or one off the patch, counts as lost.
        """
        num = len(centers)
        own = heatmaps[torch.arange(num), torch.arange(num)].float().cpu().numpy()
        # one call for all patches' own maps, as if they were K channels of one image: MMPose's heatmap codecs
        # decode every channel on its own, so this is the per-patch result, 6 instead of 39 ms for 38 landmarks
        decoded, scores = self.head.decoder.decode(own)
        local, scores = decoded[0].astype(np.float64), scores[0].astype(np.float64)
        size = np.array(self.patch_size, dtype=np.float64)
        lost = ~np.all(np.isfinite(local) & (local >= 0) & (local <= size), axis=1)
        estimates = patch_to_image(local, centers, extent, self.patch_size)
        estimates[lost] = np.nan
        image_pixels_per_heatmap_pixel = extent / max(self.patch_size) * self.patch_size[0] / own.shape[-1]
        return estimates, scores, heatmap_spread(own) * image_pixels_per_heatmap_pixel

    # ------------------------------------------------------------------------------------------- prediction
    def refine(self, keypoints: np.ndarray, source: np.ndarray, factor: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Refine ``K x 2`` radiograph-pixel estimates on ``source`` (the radiograph reduced ``factor`` times): the
        refined ``K x 2`` keypoints, their heatmap scores and the heatmaps' spread in radiograph pixels (the last
        iteration's, averaged over shifted patches). A landmark lost on every patch keeps its estimate."""
        reduction = self.reduction(factor)
        scale = factor * reduction  # radiograph pixels per pixel of the image the patches are cut from
        image, extent = area_downscale(source, reduction), self.extent(factor)
        shift = float(self.test_cfg['shift']) * extent
        offsets = np.zeros((1, 2)) if shift <= 0 else \
            np.array([[0.0, 0.0], [shift, 0.0], [-shift, 0.0], [0.0, shift], [0.0, -shift]])
        scores = spread = np.zeros(len(keypoints))
        for _ in range(int(self.test_cfg['iterations'])):
            centers = to_reduced(keypoints, scale)
            cuts = []
            for offset in offsets:
                patches, _ = self.cut(image, centers + offset, extent)
                with torch.no_grad():
                    heatmaps = self(self.normalise(patches))
                cuts.append(self.decode(heatmaps, centers + offset, extent))
            estimates = np.stack([c[0] for c in cuts])  # cuts x K x 2
            found = np.isfinite(estimates).all(axis=2)
            mean = np.nansum(estimates, axis=0) / np.maximum(found.sum(axis=0), 1)[:, None]
            keypoints = np.where(found.any(axis=0)[:, None], from_reduced(mean, scale), keypoints)
            scores = np.mean([c[1] for c in cuts], axis=0)
            spread = np.mean([c[2] for c in cuts], axis=0) * scale
        return keypoints, scores, spread

    # ------------------------------------------------------------------------------------------- training
    def training_patches(self, sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Jittered, rotated, rescaled patches of one training sample (``P x 1 x h x w`` uint8), their heatmap
        targets and keypoint weights; the sample needs ``source_img``, ``source_factor`` and ``spacing``."""
        cfg, meta = self.train_cfg, sample.metainfo
        if 'spacing' not in meta:
            raise KeyError('CascadeLandmarkEstimator: training samples need "spacing" (mm per pixel) for the jitter '
                           'in mm; use CephalometricDataset and PackCephalometricInputs')
        source, factor = meta['source_img'], int(meta['source_factor'])
        keypoints = np.asarray(sample.gt_instances.keypoints, dtype=np.float64)[0]
        visible = np.asarray(sample.gt_instances.keypoints_visible, dtype=np.float64)[0]
        if visible.ndim > 1:
            visible = visible[..., 0]
        candidates = np.flatnonzero(visible > 0)
        chosen = np.random.choice(candidates, min(int(cfg['patches_per_image']), len(candidates)), replace=False)
        reduction = self.reduction(factor)
        points = to_reduced(keypoints, factor * reduction)  # pixels of the image the patches are cut from
        extent = self.extent(factor)
        jitter_sd = cfg['jitter_mm'] / float(meta['spacing']) / (factor * reduction)
        jitter = np.random.normal(0.0, jitter_sd, (len(chosen), 2))
        jitter = np.clip(jitter, -cfg['max_offset'] * extent, cfg['max_offset'] * extent)
        rotations = np.random.uniform(-cfg['rotate_deg'], cfg['rotate_deg'], len(chosen))
        extents = extent * np.random.uniform(*cfg['scale_range'], len(chosen))
        patches, matrices = self.cut(area_downscale(source, reduction), points[chosen] + jitter, extents, rotations)
        codec = self.head.decoder
        heatmaps, weights = [], []
        for i, matrix in enumerate(matrices):
            patches[i] = self.intensity.transform({'img': patches[i]})['img']
            in_patch = cv2.transform(points[None, :, :].astype(np.float32), matrix)[0]
            encoded = codec.encode(in_patch[None], visible[None])
            heatmaps.append(encoded['heatmaps'])
            weights.append(encoded['keypoint_weights'][0])
        return patches, np.stack(heatmaps), np.stack(weights)

    def loss(self, data_samples: list) -> Optional[torch.Tensor]:
        """The weighted heatmap loss on a batch's training patches (``None`` when no landmark is visible)."""
        parts = [self.training_patches(sample) for sample in data_samples]
        patches = np.concatenate([p[0] for p in parts])
        if len(patches) == 0:
            return None
        device = self.mean.device
        targets = torch.from_numpy(np.concatenate([p[1] for p in parts])).to(device)
        weights = torch.from_numpy(np.concatenate([p[2] for p in parts])).to(device, torch.float32)
        predicted = self(self.normalise(patches))
        return self.train_cfg['loss_weight'] * self.head.loss_module(predicted, targets, weights)


__all__ = ('PatchStage', 'TEST_DEFAULTS', 'TRAIN_DEFAULTS', 'heatmap_spread')
