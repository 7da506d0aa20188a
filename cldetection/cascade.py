"""Coarse-to-fine landmark detection: a global stage on the downscaled radiograph, a local stage on patches.

``CascadeLandmarkEstimator`` is an MMPose ``TopdownPoseEstimator`` (its backbone and head are the **global
stage**: the whole radiograph, downscaled, in; one heatmap per landmark out) with a second network, the
**local stage**, that refines every landmark on a small high-resolution patch centred on the global estimate.
One model, one config, one checkpoint: step 3 trains both stages together, step 4, step 5 and the
grand-challenge container predict with the cascade through MMPose's ordinary ``test_step``.

How the local stage works
-------------------------
* The patch of landmark ``k`` is an ``h x w`` crop of the radiograph at ``pixel_scale`` source pixels per patch
  pixel (e.g. 128 x 128 at 2 px: 25.6 mm of a 0.1 mm/px image), centred on the point to refine.
* One shared network serves every landmark: it predicts a heatmap for *each* landmark (``K`` channels) on
  every patch, supervised for every landmark that lies inside the patch; the estimate of landmark ``k`` is read
  from channel ``k`` of its own patch. Sharing the network multiplies its training examples by ``K``.
* Training patches are centred on the ground truth moved by a random offset (Gaussian, ``jitter_mm`` per
  axis, cut so the landmark stays inside the patch), standing in for the global stage's error, plus a random
  rotation, scale and X-ray intensity change. Patches are cut in the model, so the data pipeline stays MMPose's.
* The patch source is the radiograph in grey, downscaled once with area averaging to ``pixel_scale`` (see
  :class:`KeepSourceImage`): patches are then plain resamplings with no aliasing.

An optional **middle stage** (``middle=dict(...)``, a second patch stage of the same form) runs between the two:
coarser, wider patches (e.g. 0.4 mm per pixel over 38 mm, cut from a copy of the source reduced once more by area
averaging, see :meth:`PatchStage.reduction`), trained on offsets as large as the global stage's errors, so that the
local stage starts close enough to its landmark to find it. The local stage, trained on small offsets, stays
precise; trained on large ones itself, it loses that precision. With ``train=dict(start='previous_stage')`` a
patch stage's training patches are centred where the stage before it (the global or the middle stage) puts the
landmark (its real error, not a Gaussian guess of it), plus the stage's own, smaller ``jitter_mm``; with
``start_share`` below 1 only that share of the patches, the others on the truth plus ``truth_jitter_mm``.

The global stage sees the radiograph through :class:`AntiAliasTopdownAffine`, MMPose's ``TopdownAffine``
with area averaging before large downscales (an 8x bilinear warp of a 2400-pixel image aliases noise and thin
edges).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmpose.datasets.transforms import TopdownAffine
from mmpose.models.pose_estimators import TopdownPoseEstimator
from mmpose.registry import HOOKS, KEYPOINT_CODECS, MODELS, TRANSFORMS
from mmpose.structures.bbox import get_udp_warp_matrix, get_warp_matrix

from .config_utils import maps_per_landmark
from .precision import backbone_autocast, float32_features, phase_precisions, uses_bf16
from .transforms import RandomElasticDeform, RandomXRayIntensity

#: Where a patch stage's training patches are centred before its own random offset (``train.start``): on the
#: ground truth, or on the estimate of the stage before it, the global stage or a patch stage (see
#: :meth:`CascadeLandmarkEstimator._previous_stage_offsets`).
TRAINING_STARTS: tuple[str, ...] = ('truth', 'previous_stage')

#: ``results`` keys that :class:`KeepSourceImage` adds and ``PackCephalometricInputs`` must keep.
SOURCE_META_KEYS: tuple[str, ...] = ('source_img', 'source_factor')


# ---------------------------------------------------------------------------------------- geometry
def area_downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` reduced ``factor`` times by area averaging (cv2.INTER_AREA); ``factor`` 1 returns it as is.

    The image is first cut to a multiple of ``factor`` so that output pixel ``i`` averages input pixels
    ``factor*i .. factor*i + factor-1`` exactly: source coordinate ``x`` is then ``(x + 0.5) / factor - 0.5``.
    """
    if factor <= 1:
        return image
    height, width = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    return cv2.resize(image[:height, :width], (width // factor, height // factor), interpolation=cv2.INTER_AREA)


def to_reduced(points: np.ndarray, factor: int) -> np.ndarray:
    """Pixel coordinates of the full image -> those of its ``area_downscale(.., factor)`` copy."""
    return (points + 0.5) / factor - 0.5


def from_reduced(points: np.ndarray, factor: int) -> np.ndarray:
    """Inverse of :func:`to_reduced`."""
    return (points + 0.5) * factor - 0.5


def patch_warp_matrix(center: np.ndarray, extent: float, rotation: float, size: tuple[int, int]) -> np.ndarray:
    """The 2 x 3 UDP warp from image pixels to a ``size = (w, h)`` patch covering ``extent`` pixels (square).

    The same warp MMPose's ``TopdownAffine(use_udp=True)`` uses for a box of that size, so MMPose's UDP codec
    encodes and decodes patch coordinates exactly as it does for top-down inputs.
    """
    return get_udp_warp_matrix(np.asarray(center, dtype=np.float32),
                               np.array([extent * size[0] / max(size), extent * size[1] / max(size)],
                                        dtype=np.float32),
                               float(rotation), output_size=size)


def patch_to_image(decoded: np.ndarray, centers: np.ndarray, extent: float, size: tuple[int, int]) -> np.ndarray:
    """Codec-decoded patch coordinates (``P x 2``) of unrotated patches -> image pixels.

    MMPose's UDP codec decodes to ``heatmap / (heatmap_size - 1) * input_size`` and MMPose maps that back with
    ``p / input_size * box + center - box / 2`` (``TopdownPoseEstimator.add_pred_to_datasample``); the two
    together invert the UDP warp exactly, so the same formula serves patches.
    """
    size_arr = np.array(size, dtype=np.float64)
    box = extent * size_arr / size_arr.max()
    return decoded / size_arr * box + centers - 0.5 * box


def cut_patches(image: np.ndarray, centers: np.ndarray, extent: float | np.ndarray, size: tuple[int, int],
                rotations: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Patches (``P x h x w``, dtype of ``image``) around ``centers`` (``P x 2``) and their warp matrices.

    ``extent``: image pixels each patch covers (one value, or one per patch); pixels outside the image are 0.
    """
    count = len(centers)
    extents = np.broadcast_to(np.asarray(extent, dtype=np.float64), (count,))
    rotations = np.zeros(count) if rotations is None else rotations
    matrices = np.stack([patch_warp_matrix(c, e, r, size) for c, e, r in zip(centers, extents, rotations)]) \
        if count else np.zeros((0, 2, 3))
    patches = [cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
               for m in matrices]
    return (np.stack(patches) if count else np.zeros((0, size[1], size[0]), image.dtype)), matrices


# ---------------------------------------------------------------------------------------- transforms
@TRANSFORMS.register_module()
class AntiAliasTopdownAffine(TopdownAffine):
    """MMPose's ``TopdownAffine`` that first reduces the image by area averaging when the crop shrinks it.

    When the box is more than twice the input size, the image is reduced ``floor(box / input)`` times with
    :func:`area_downscale` and the box and keypoints are mapped onto the reduced image before MMPose's warp;
    afterwards every output key (``input_center``, ``input_scale``, ``bbox_*``) is mapped back, so downstream
    transforms, the codec and MMPose's back-projection of predictions are unchanged.

    It also records ``input_warp``: the 2 x 3 affine map from image pixels to input pixels (area reduction and
    MMPose's warp, with its rotation), which MMPose does not keep; the cascade maps the global stage's training
    estimates back to the image with it (``train.start='previous_stage'``).
    """

    def _warp_used(self, results: dict) -> np.ndarray:
        """The warp MMPose's ``TopdownAffine.transform`` has just applied (read from the keys it used)."""
        rotation = float(results['bbox_rotation'][0]) if 'bbox_rotation' in results else 0.0
        warp = get_udp_warp_matrix if self.use_udp else get_warp_matrix
        return warp(results['bbox_center'][0], results['bbox_scale'][0], rotation, output_size=tuple(self.input_size))

    def transform(self, results: dict) -> Optional[dict]:
        w, h = self.input_size
        scale = self._fix_aspect_ratio(results['bbox_scale'], aspect_ratio=w / h)[0]
        factor = int(min(scale[0] / w, scale[1] / h))
        if factor < 2:
            results = super().transform(results)
            results['input_warp'] = self._warp_used(results).astype(np.float64)
            return results
        originals = {key: results[key] for key in ('img', 'bbox_center', 'bbox_scale', 'keypoints')
                     if results.get(key) is not None}
        results['img'] = area_downscale(results['img'], factor)
        results['bbox_center'] = to_reduced(results['bbox_center'], factor)
        results['bbox_scale'] = results['bbox_scale'] / factor
        if 'keypoints' in originals:
            results['keypoints'] = originals['keypoints'].copy()
            results['keypoints'][..., :2] = to_reduced(originals['keypoints'][..., :2], factor)
        results = super().transform(results)
        reduce = np.array([[1.0 / factor, 0.0, 0.5 / factor - 0.5], [0.0, 1.0 / factor, 0.5 / factor - 0.5],
                           [0.0, 0.0, 1.0]])  # image pixels -> reduced pixels (to_reduced)
        results['input_warp'] = self._warp_used(results).astype(np.float64) @ reduce
        if 'keypoints' in originals:  # (absent at inference: no key may appear that was not there)
            results['keypoints'] = originals['keypoints']
        results['bbox_center'] = originals['bbox_center']
        results['bbox_scale'] = results['bbox_scale'] * factor
        results['input_center'] = from_reduced(results['input_center'], factor)
        results['input_scale'] = results['input_scale'] * factor
        return results


@TRANSFORMS.register_module()
class KeepSourceImage(BaseTransform):
    """Keep the radiograph, grey and reduced ``factor`` times (area averaging), for the cascade's local stage.

    Must come before the transform that crops the image (``TopdownAffine``), and ``PackCephalometricInputs``
    must keep :data:`SOURCE_META_KEYS` (it does by default). The grey copy is a third of the memory of the
    3-channel image, and radiographs carry no colour.
    """

    def __init__(self, factor: int = 2) -> None:
        if int(factor) != factor or factor < 1:
            raise ValueError(f'KeepSourceImage: factor must be a positive integer, got {factor!r}')
        self.factor = int(factor)

    def transform(self, results: dict) -> dict:
        img = results['img']
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 and img.shape[2] == 3 else \
            (img[..., 0] if img.ndim == 3 else img)
        results['source_img'] = area_downscale(np.ascontiguousarray(grey), self.factor)
        results['source_factor'] = self.factor
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(factor={self.factor})'


# ---------------------------------------------------------------------------------------- the model
class PatchStage:
    """One patch stage of the cascade: its settings and its network (backbone + heatmap head).

    The estimator owns the network's modules (attributes ``refine_backbone`` / ``refine_head`` for the local
    stage, ``refine_middle_backbone`` / ``refine_middle_head`` for the middle one), so parameter names, and with
    them checkpoints of the two-stage cascade, stay as they were; this object only refers to them.
    """

    def __init__(self, name: str, cfg: dict, backbone: torch.nn.Module, head: torch.nn.Module) -> None:
        cfg = dict(cfg)
        self.name = name
        self.backbone, self.head = backbone, head
        self.patch_size = tuple(int(v) for v in cfg.pop('patch_size'))
        self.pixel_scale = float(cfg.pop('pixel_scale'))
        context = cfg.pop('context', None)
        self.context = None if context is None else tuple(int(c) for c in context)
        if self.context is not None and (len(self.context) != 3 or self.context[0] != 1 or min(self.context) < 1
                                         or tuple(context) != self.context):
            raise ValueError(f'CascadeLandmarkEstimator: {name}.context must be 3 positive integers (one per input '
                             f'channel) starting with 1 (the patch itself), got {context!r}')
        self.train = dict(patches_per_image=8, jitter_mm=2.5, max_offset=0.35, rotate_deg=10.0,
                          scale_range=(0.9, 1.1), intensity=dict(prob=0.5), deform=None, loss_weight=1.0,
                          start='truth', start_share=1.0, truth_jitter_mm=None)
        self.train.update(cfg.pop('train', {}))
        if self.train['start'] not in TRAINING_STARTS:
            raise ValueError(f'CascadeLandmarkEstimator: {name}.train.start must be one of {TRAINING_STARTS}, got '
                             f"{self.train['start']!r}")
        def is_number(value) -> bool:  # (a bool is an int to Python, not a number to a config)
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        share = self.train['start_share']
        if not is_number(share) or not 0.0 < share <= 1.0:
            raise ValueError(f'CascadeLandmarkEstimator: {name}.train.start_share must be a number in (0, 1], got '
                             f'{share!r}')
        truth_jitter = self.train['truth_jitter_mm']
        if truth_jitter is not None and (not is_number(truth_jitter) or truth_jitter < 0):
            raise ValueError(f'CascadeLandmarkEstimator: {name}.train.truth_jitter_mm must be None or a number >= 0, '
                             f'got {truth_jitter!r}')
        if (share < 1 or truth_jitter is not None) and self.train['start'] != 'previous_stage':
            raise ValueError(f"CascadeLandmarkEstimator: {name}.train.start_share and truth_jitter_mm need "
                             f"start='previous_stage' (with start='truth' every patch is centred on the truth)")
        if truth_jitter is not None and truth_jitter != self.train['jitter_mm'] and self.train['jitter_mm'] <= 0:
            raise ValueError(f'CascadeLandmarkEstimator: {name}.train.truth_jitter_mm needs jitter_mm > 0 (the '
                             'offsets are drawn once and rescaled)')
        self.test = dict(iterations=1, shift=0.0, neighbours=0.0)
        self.test.update(cfg.pop('test', {}))
        if cfg:
            raise ValueError(f'CascadeLandmarkEstimator: unknown {name} keys {sorted(cfg)}')
        codec = head.decoder
        if codec is None or tuple(codec.input_size) != self.patch_size:
            raise ValueError(f'CascadeLandmarkEstimator: the {name} head needs a decoder whose input_size is the '
                             f'patch_size {self.patch_size}')
        #: maps per landmark in the head's output: 1 (a heatmap) or 3 (UDP 'combined': a class map and the x and
        #: y offset maps, interleaved per landmark as MMPose's codec and CombinedTargetMSELoss lay them out)
        self.maps_per_landmark = maps_per_landmark(codec)
        head_channels = getattr(head, 'out_channels', None)
        if head_channels is not None and head_channels % self.maps_per_landmark:
            raise ValueError(f'CascadeLandmarkEstimator: the {name} head has {head_channels} output channels; its '
                             f"codec needs {self.maps_per_landmark} per landmark (heatmap_type='combined': 3 x K)")
        if float(self.test['neighbours']) > 0 and self.maps_per_landmark != 1:
            raise ValueError(f'CascadeLandmarkEstimator: {name}.test.neighbours needs plain heatmaps (one map per '
                             'landmark), not heatmap + offsets')
        self.intensity = RandomXRayIntensity(**self.train['intensity'])
        deform = self.train['deform']
        if deform and self.context is not None:
            raise ValueError(f'CascadeLandmarkEstimator: {name}.train.deform cannot be combined with {name}.context '
                             '(the deformation would move the patch and not its context channels)')
        self.deform = RandomElasticDeform(**deform) if deform else None

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.backbone.parameters()) + list(self.head.parameters())

    def reduction(self, factor: int) -> int:
        """How many times the stage reduces the (``factor``-reduced) source before cutting its patches: the whole
        part of ``pixel_scale / factor`` (at least 1). A coarse stage (e.g. 4 radiograph pixels per patch pixel
        from a source reduced 2x) then cuts from an area-averaged copy instead of skipping pixels (aliasing)."""
        return max(1, int(math.floor(self.pixel_scale / factor + 1e-9)))

    def offset_sd(self, spacing: float, factor: int) -> float:
        """SD of the random training offset (``train.jitter_mm``) in pixels of the stage's first level, for a
        radiograph of ``spacing`` mm per pixel and a ``factor``-reduced source."""
        return self.train['jitter_mm'] / spacing / (factor * self.reduction(factor))

    @property
    def truth_jitter_ratio(self) -> float:
        """With ``train.start='previous_stage'``: the SD of the offset of patches centred on the truth (not on the
        previous stage's estimate: ``start_share`` < 1, or where that stage lost the landmark) over the SD of the
        offset added to the estimate; 1 unless ``train.truth_jitter_mm`` is set."""
        truth_jitter = self.train['truth_jitter_mm']
        if truth_jitter is None or self.train['jitter_mm'] == truth_jitter:
            return 1.0
        return float(truth_jitter) / float(self.train['jitter_mm'])  # (jitter_mm > 0: checked when built)

    def extent(self, factor: int) -> float:
        """Pixels of the ``factor``-reduced source that one patch covers."""
        return self.pixel_scale / factor * max(self.patch_size)

    def level_extent(self, factor: int) -> float:
        """Pixels one patch covers of the copy it is cut from (the source reduced :meth:`reduction` times)."""
        return self.extent(factor) / self.reduction(factor)


@MODELS.register_module()
class CascadeLandmarkEstimator(TopdownPoseEstimator):
    """Global heatmap stage (MMPose top-down: ``backbone``, ``neck``, ``head``) + a shared local patch stage,
    optionally with a middle patch stage between them.

    Args:
        refine: the local stage::

            dict(backbone=..., head=...,          # an MMPose backbone and heatmap head (out_channels = K);
                                                  # the head's ``decoder`` is the patch codec (e.g. UDP);
                                                  # UDP heatmap_type='combined' (heatmap + offsets): 3K
                                                  # channels, loss CombinedTargetMSELoss
                 patch_size=(128, 128),           # patch (w, h) in pixels = the codec's input_size
                 pixel_scale=2.0,                 # radiograph pixels per patch pixel (a multiple of the source
                                                  # factor of KeepSourceImage: patches are then plain
                                                  # resamplings of an area-averaged copy)
                 context=None,                    # or one integer per input channel (3), the first 1, e.g.
                                                  # (1, 2, 4): channel c shows context[c] times the patch's
                                                  # field at the same pixel count (see _source_levels)
                 train=dict(patches_per_image=8,  # landmarks refined per image and iteration (random)
                            jitter_mm=2.5,        # SD of the patch centre's offset from the truth, per axis
                            max_offset=0.35,      # offset cut at this fraction of the patch side
                            rotate_deg=10.0, scale_range=(0.9, 1.1), intensity=dict(prob=0.5),
                            deform=None,          # or dict(axis_scale=, elastic_sd=, grid=, prob=): per-axis
                                                  # scale + elastic field per patch (RandomElasticDeform's)
                            loss_weight=1.0,
                            start='truth',        # or 'previous_stage': the offset is the error of the stage
                                                  # before (global or middle) on this training image, plus
                                                  # jitter_mm (see _previous_stage_offsets)
                            start_share=1.0,      # with 'previous_stage': the share of patches so centred (each
                                                  # patch drawn); the rest on the truth + truth_jitter_mm
                            truth_jitter_mm=None),  # SD of those patches' offset (and of the fallbacks where
                                                  # the stage before lost the landmark); None: jitter_mm
                 test=dict(iterations=1,          # refinements, each centred on the previous estimate
                           shift=0.0,             # > 0: also 4 patches moved +-shift x patch side, averaged
                           neighbours=0.0))       # > 0: also read landmark j off every other landmark's
                                                  # patch whose centre lies within neighbours x patch side
                                                  # of j's, and average (no extra network passes)

        middle: ``None`` (two stages), or a second patch stage of the same form, run between the global and the
            local stage: typically coarser and wider (e.g. 0.4 mm per pixel over 38 mm), trained on offsets as
            large as the global stage's errors, so that the local stage starts close enough to find its landmark.
            Both patch stages train in the same iterations as the global stage (losses ``loss_middle`` and
            ``loss_refine``).

        The global stage's ``test_cfg`` may set ``refine=False`` to return the global estimates only (for
        ablations).
        channels_last: keep the backbones' weights channels-last (NHWC), faster with oneDNN on a CPU (see
            :mod:`cldetection.precision`); the same arithmetic, the same checkpoints.
        precision: ``'fp32'``, ``'bf16'`` (the backbones in bfloat16 autocast; the heads, losses and decoding stay
            float32) or ``'auto'`` (bf16 where the hardware multiplies it: a CPU with AVX512-BF16 or AMX, a CUDA
            device with bfloat16; else fp32), for training and prediction alike, or ``dict(train=..., test=...)``
            to set them apart (training iterations; validation, step 4 and step 5).
        Other arguments: as :class:`mmpose.models.TopdownPoseEstimator`.
    """

    def __init__(self, backbone: dict, head: dict, refine: dict, neck: Optional[dict] = None,
                 middle: Optional[dict] = None, channels_last: bool = True,
                 precision: str | dict = 'fp32',
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None,
                 metainfo: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg, metainfo=metainfo)
        stages = []
        if middle is not None:
            middle = dict(middle)
            self.refine_middle_backbone = MODELS.build(middle.pop('backbone'))
            self.refine_middle_head = MODELS.build(middle.pop('head'))
            stages.append(PatchStage('middle', middle, self.refine_middle_backbone, self.refine_middle_head))
        refine = dict(refine)
        self.refine_backbone = MODELS.build(refine.pop('backbone'))
        self.refine_head = MODELS.build(refine.pop('head'))
        #: the local stage (the last patch stage)
        self.local_stage = PatchStage('refine', refine, self.refine_backbone, self.refine_head)
        stages.append(self.local_stage)
        #: the patch stages in the order they refine: (middle,) local
        self.patch_stages: tuple[PatchStage, ...] = tuple(stages)
        #: set by LocalStageScheduleHook: the patch stages no longer train (no patches cut, no loss)
        self.refine_frozen = False
        #: per patch stage with train.start='previous_stage': [patches of this iteration centred on the estimate of
        #: the stage before, the sum of those estimates' errors in mm] (logged by :meth:`loss` as
        #: ``<stage>_start_used``, the share, and ``<stage>_start_error_mm``, their mean error)
        self._starts_used: dict[str, list] = {}
        #: {'train': p, 'test': p}, p one of 'fp32', 'bf16', 'auto' (see :mod:`cldetection.precision`); read at
        #: every forward (the phase from ``self.training``), so it can be changed on a loaded model
        self.precision = phase_precisions(precision)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            for network in (self.backbone, *(stage.backbone for stage in self.patch_stages)):
                network.to(memory_format=torch.channels_last)

    def _backbone_forward(self, backbone: torch.nn.Module, inputs: torch.Tensor):
        """``backbone(inputs)`` in the model's memory format and precision; the features come back contiguous
        float32 for the heads."""
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        bf16 = uses_bf16(self.precision['train' if self.training else 'test'], inputs.device)
        with backbone_autocast(bf16, inputs.device):
            features = backbone(inputs)
        return float32_features(features)

    def extract_feat(self, inputs: torch.Tensor) -> tuple:
        features = self._backbone_forward(self.backbone, inputs)
        if self.with_neck:
            features = self.neck(features)
        return features

    # The local stage's settings under the names tools and tests have used since the two-stage cascade.
    @property
    def patch_size(self) -> tuple[int, ...]:
        return self.local_stage.patch_size

    @property
    def pixel_scale(self) -> float:
        return self.local_stage.pixel_scale

    @property
    def context(self) -> Optional[tuple[int, ...]]:
        return self.local_stage.context

    @property
    def refine_train(self) -> dict:
        return self.local_stage.train

    @property
    def refine_test(self) -> dict:
        return self.local_stage.test

    @property
    def maps_per_landmark(self) -> int:
        return self.local_stage.maps_per_landmark

    # ------------------------------------------------------------------------------ patches
    def _extent(self, factor: int) -> float:
        """Pixels of the ``factor``-reduced source that one patch of the local stage covers."""
        return self.local_stage.extent(factor)

    def _source_levels(self, source: np.ndarray, stage: Optional[PatchStage] = None, reduction: int = 1
                       ) -> list[tuple[np.ndarray, int]]:
        """The images ``stage``'s input channels are cut from, each with its reduction from ``source``:
        ``source`` reduced ``reduction`` times (see :meth:`PatchStage.reduction`), and with ``context``, one per
        channel, reduced ``reduction * context[c]`` times (area averaging).

        A context channel covers ``context[c]`` times the patch's field with the same pixel count; cutting it from
        a reduced copy (same extent in the copy's pixels) resamples without aliasing, like the patch itself. The
        context lets the local stage see the structures around its patch (the whole ramus for gonion, the skull
        base for porion and articulare) at no extra network cost: only the first convolution reads channels.
        """
        stage = stage or self.local_stage
        levels: dict[int, np.ndarray] = {}
        out = []
        for scale in (stage.context or (1, )):
            total = reduction * scale
            if total not in levels:
                levels[total] = area_downscale(source, total)
            out.append((levels[total], total))
        return out

    def _cut_inputs(self, levels: list[tuple[np.ndarray, int]], centers: np.ndarray, extent: float | np.ndarray,
                    rotations: Optional[np.ndarray] = None, stage: Optional[PatchStage] = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """``P x C x h x w`` patches (C: 1, or one per context level) around ``centers`` (pixels of the first
        level) covering ``extent`` pixels of every level, and the warp matrices of the patch itself (channel 0,
        first-level pixels), which the heatmap targets follow."""
        stage = stage or self.local_stage
        base = levels[0][1]
        cuts = [cut_patches(level, to_reduced(from_reduced(centers, base), total) if total != base else centers,
                            extent, stage.patch_size, rotations) for level, total in levels]
        return np.stack([patches for patches, _ in cuts], axis=1), cuts[0][1]

    def _normalise(self, patches: np.ndarray) -> torch.Tensor:
        """``P x C x h x w`` uint8 grey patches -> the network's normalised ``P x 3 x h x w`` float input (one
        channel is repeated 3 times, as the global stage sees the grey radiograph)."""
        x = torch.from_numpy(np.ascontiguousarray(patches)).to(self.data_preprocessor.mean.device, torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.data_preprocessor.mean) / self.data_preprocessor.std

    def patch_heatmaps(self, inputs: torch.Tensor, stage: Optional[PatchStage] = None) -> torch.Tensor:
        """A patch stage's heatmaps (the local stage's by default) for normalised ``P x 3 x h x w`` patches,
        through the model's speed settings; the one way to run a patch network (step 1's check and
        ``benchmarks.cascade_cost`` call it too)."""
        stage = stage or self.local_stage
        return stage.head.forward(self._backbone_forward(stage.backbone, inputs))

    def _refine_forward(self, patches: np.ndarray, stage: Optional[PatchStage] = None) -> torch.Tensor:
        return self.patch_heatmaps(self._normalise(patches), stage)

    def _training_patches(self, sample, stage: Optional[PatchStage] = None, coarse: Optional[np.ndarray] = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Jittered, rotated, rescaled patches of one sample and their heatmap targets and weights; ``coarse``:
        the global stage's ``K x 2`` estimates (image pixels) on this sample, for ``train.start='previous_stage'``
        of the first patch stage."""
        stage = stage or self.local_stage
        cfg = stage.train
        meta = sample.metainfo
        source, factor = meta['source_img'], int(meta['source_factor'])
        keypoints = np.asarray(sample.gt_instances.keypoints, dtype=np.float64)[0]
        visible = np.asarray(sample.gt_instances.keypoints_visible, dtype=np.float64)[0]
        if visible.ndim > 1:
            visible = visible[..., 0]
        candidates = np.flatnonzero(visible > 0)
        chosen = np.random.choice(candidates, min(int(cfg['patches_per_image']), len(candidates)), replace=False)
        reduction = stage.reduction(factor)
        points = to_reduced(keypoints, factor * reduction)  # pixels of the stage's first level
        extent = stage.level_extent(factor)
        if 'spacing' not in meta:
            raise KeyError('CascadeLandmarkEstimator: training samples need "spacing" (mm per pixel) for the jitter '
                           'in mm; use CephalometricDataset and PackCephalometricInputs')
        spacing = float(meta['spacing'])
        jitter = np.random.normal(0.0, stage.offset_sd(spacing, factor), (len(chosen), 2))
        if cfg['start'] == 'previous_stage':
            # each patch on the previous stage's estimate with probability start_share (no draw when 1, so runs
            # without a share repeat the earlier runs' random numbers exactly)
            take = (np.random.random_sample(len(chosen)) < cfg['start_share'] if cfg['start_share'] < 1
                    else np.ones(len(chosen), dtype=bool))
            offsets, used = self._previous_stage_offsets(stage, sample, chosen, extent, coarse, take)
            jitter[~used] *= stage.truth_jitter_ratio  # centred on the truth: truth_jitter_mm, not jitter_mm
            jitter += offsets
        jitter = np.clip(jitter, -cfg['max_offset'] * extent, cfg['max_offset'] * extent)
        rotations = np.random.uniform(-cfg['rotate_deg'], cfg['rotate_deg'], len(chosen))
        extents = extent * np.random.uniform(*cfg['scale_range'], len(chosen))
        patches, matrices = self._cut_inputs(self._source_levels(source, stage, reduction), points[chosen] + jitter,
                                             extents, rotations, stage)
        codec = stage.head.decoder
        heatmaps, weights = [], []
        for i, matrix in enumerate(matrices):
            patches[i] = stage.intensity.transform({'img': patches[i]})['img']  # the same change on every channel
            in_patch = cv2.transform(points[None, :, :].astype(np.float32), matrix)[0]
            if stage.deform is not None:  # (one channel: deform and context exclude each other)
                deformed = stage.deform.transform({'img': patches[i, 0], 'transformed_keypoints': in_patch})
                patches[i, 0], in_patch = deformed['img'], deformed['transformed_keypoints']
            encoded = codec.encode(in_patch[None], visible[None])
            heatmaps.append(encoded['heatmaps'])
            weights.append(encoded['keypoint_weights'][0])
        return patches, np.stack(heatmaps), np.stack(weights)

    def _previous_stage_offsets(self, stage: PatchStage, sample, chosen: np.ndarray, extent: float,
                                coarse: Optional[np.ndarray] = None, take: Optional[np.ndarray] = None
                                ) -> tuple[np.ndarray, np.ndarray]:
        """``train.start='previous_stage'``: the error the stage before ``stage`` makes on the ``chosen``
        landmarks of this training sample, as offsets in pixels of ``stage``'s first level (``P x 2``; 0 where
        it lost the landmark, missed by more than ``stage``'s ``max_offset``, or ``take`` is False), and which
        patches use it (``P`` booleans).

        Before the first patch stage that is the global stage: ``coarse``, its estimates on this (augmented)
        training image, from the same forward pass as its loss (:meth:`_global_training_estimates`). Before a
        later patch stage it is the patch stage before it, which refines without gradient and in eval mode, as at
        test time, from the truth moved by its own training offset (``jitter_mm``, its stand-in for the global
        stage's error). Why: a Gaussian offset around the truth is a guess of the error ``stage`` must correct;
        the previous stage's own estimates carry its real error, with its direction along a contour and its
        per-landmark bias. On training images that error is smaller than on new images (the previous stage has
        seen them), so ``stage``'s own ``jitter_mm`` still adds to it.
        """
        index = self.patch_stages.index(stage)
        meta = sample.metainfo
        factor = int(meta['source_factor'])
        keypoints = np.asarray(sample.gt_instances.keypoints, dtype=np.float64)[0][chosen]
        if index == 0:
            if coarse is None:
                raise ValueError(f"CascadeLandmarkEstimator: {stage.name}.train.start='previous_stage' needs the "
                                 "global stage's training estimates")
            estimates = np.asarray(coarse, dtype=np.float64)[chosen]
        else:
            estimates = self._patch_stage_training_estimates(self.patch_stages[index - 1], sample, chosen, keypoints)
        scale = factor * stage.reduction(factor)
        offsets = to_reduced(estimates, scale) - to_reduced(keypoints, scale)
        usable = np.isfinite(offsets).all(axis=1) & (np.abs(offsets) <= stage.train['max_offset'] * extent).all(axis=1)
        if take is not None:
            usable &= np.asarray(take, dtype=bool)
        used = self._starts_used.setdefault(stage.name, [0, 0.0])
        used[0] += int(usable.sum())
        used[1] += float(np.linalg.norm(offsets[usable], axis=1).sum()) * scale * float(meta['spacing'])
        return np.where(usable[:, None], offsets, 0.0), usable

    def _patch_stage_training_estimates(self, previous: PatchStage, sample, chosen: np.ndarray,
                                        keypoints: np.ndarray) -> np.ndarray:
        """``previous``'s estimates (image pixels, NaN where lost) of the ``chosen`` landmarks of a training
        sample, from the truth (``keypoints``) moved by its own training offset; eval mode, no gradient."""
        meta = sample.metainfo
        source, factor = meta['source_img'], int(meta['source_factor'])
        previous_reduction = previous.reduction(factor)
        previous_extent = previous.level_extent(factor)
        cfg = previous.train
        start_offset = np.random.normal(0.0, previous.offset_sd(float(meta['spacing']), factor), (len(chosen), 2))
        start_offset = np.clip(start_offset, -cfg['max_offset'] * previous_extent, cfg['max_offset'] * previous_extent)
        starts = to_reduced(keypoints, factor * previous_reduction) + start_offset
        modes = [module.training for module in (previous.backbone, previous.head)]
        previous.backbone.eval()
        previous.head.eval()
        try:
            estimates, _ = self._refine_once(starts, self._source_levels(source, previous, previous_reduction),
                                             previous_extent, previous, landmarks=chosen)
        finally:
            previous.backbone.train(modes[0])
            previous.head.train(modes[1])
        return from_reduced(estimates, factor * previous_reduction)

    def _global_training_estimates(self, feats: tuple, data_samples: list) -> list[np.ndarray]:
        """The global stage's ``K x 2`` estimates on each training sample, in image pixels: its heatmaps from
        ``feats`` (the features its loss was computed on), decoded, mapped back through each sample's
        ``input_warp`` (recorded by :class:`AntiAliasTopdownAffine`, augmentation rotation included)."""
        with torch.no_grad():
            decoded = self.head.decode(self.head.forward(feats))
        # UDP codecs decode input pixel u to u * w / (w - 1) (the frame of MMPose's back-projection of predictions,
        # box / w per unit); the UDP warp maps the box onto pixels 0 .. w - 1
        codec = self.head.decoder
        size = np.asarray(codec.input_size, dtype=np.float64)
        to_pixels = (size - 1) / size if isinstance(codec, KEYPOINT_CODECS.get('UDPHeatmap')) else np.ones(2)
        estimates = []
        for instances, sample in zip(decoded, data_samples):
            if 'input_warp' not in sample.metainfo:
                raise KeyError("CascadeLandmarkEstimator: train.start='previous_stage' needs each training sample's "
                               '"input_warp": use AntiAliasTopdownAffine and PackCephalometricInputs')
            inverse = cv2.invertAffineTransform(np.asarray(sample.metainfo['input_warp'], dtype=np.float64))
            points = np.asarray(instances.keypoints, dtype=np.float64)[0] * to_pixels
            estimates.append(points @ inverse[:, :2].T + inverse[:, 2])
        return estimates

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict:
        # TopdownPoseEstimator.loss, with the features kept for the global stage's estimates
        feats = self.extract_feat(inputs)
        losses = dict()
        if self.with_head:
            losses.update(self.head.loss(feats, data_samples, train_cfg=self.train_cfg))
        if self.refine_frozen:
            return losses
        device = inputs.device
        self._starts_used = {}
        coarse: list = [None] * len(data_samples)
        if self.patch_stages[0].train['start'] == 'previous_stage':
            coarse = self._global_training_estimates(feats, data_samples)
        for stage in self.patch_stages:
            parts = [self._training_patches(sample, stage, estimates)
                     for sample, estimates in zip(data_samples, coarse)]
            patches = np.concatenate([p[0] for p in parts])
            if len(patches) == 0:
                continue
            targets = torch.from_numpy(np.concatenate([p[1] for p in parts])).to(device)
            weights = torch.from_numpy(np.concatenate([p[2] for p in parts])).to(device, torch.float32)
            predicted = self._refine_forward(patches, stage)
            losses[f'loss_{stage.name}'] = stage.train['loss_weight'] * stage.head.loss_module(
                predicted, targets, weights)
            if stage.train['start'] == 'previous_stage':  # logged (not losses): the share of patches centred on
                # the stage before's estimate (the rest: it lost the landmark or missed by more than max_offset)
                # and that estimate's mean error: how far the stage before is off on training images
                used, error_mm = self._starts_used.get(stage.name, (0, 0.0))
                losses[f'{stage.name}_start_used'] = torch.tensor(used / len(patches))
                losses[f'{stage.name}_start_error_mm'] = torch.tensor(error_mm / max(used, 1))
        return losses

    def _test_offsets(self, extent: float, stage: Optional[PatchStage] = None) -> np.ndarray:
        """Patch-centre offsets (source pixels) of one refinement: (0, 0), then the test-time shifts.

        ``test.shift`` (a fraction of the patch side, 0 = off) adds four patches moved by that much along +-x and
        +-y; each patch's estimate is mapped back to the image and the estimates are averaged. The local stage
        leans on where its patch is cut; averaging over cuts spreads that bias.
        """
        shift = float((stage or self.local_stage).test['shift']) * extent
        if shift <= 0:
            return np.zeros((1, 2))
        return np.array([[0.0, 0.0], [shift, 0.0], [-shift, 0.0], [0.0, shift], [0.0, -shift]])

    def _own_maps(self, heatmaps: torch.Tensor, stage: Optional[PatchStage] = None,
                  landmarks: Optional[np.ndarray] = None) -> np.ndarray:
        """Patch k's maps of its own landmark (``landmarks[k]``; by default k: patches in landmark order):
        ``P x m x h x w``, m = :attr:`PatchStage.maps_per_landmark` (the heatmap; or class, x and y offset maps)."""
        num, m = len(heatmaps), (stage or self.local_stage).maps_per_landmark
        own = torch.arange(num) if landmarks is None else torch.as_tensor(np.asarray(landmarks), dtype=torch.long)
        return heatmaps.reshape(num, -1, m, *heatmaps.shape[-2:])[torch.arange(num), own].cpu().numpy()

    def _refine_once(self, centers: np.ndarray, levels: list[tuple[np.ndarray, int]], extent: float,
                     stage: Optional[PatchStage] = None, landmarks: Optional[np.ndarray] = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """One pass of ``stage`` on patches centred on ``centers`` (pixels of the first of ``levels``: see
        :meth:`_source_levels`), patch k refining landmark ``landmarks[k]`` (by default every landmark, in
        order): estimates in those pixels (NaN where the landmark was lost: a flat heatmap or a fit off the
        patch) and heatmap scores."""
        stage = stage or self.local_stage
        num = len(centers)
        patches, _ = self._cut_inputs(levels, centers, extent, stage=stage)
        with torch.no_grad():
            heatmaps = self._refine_forward(patches, stage)
        own = self._own_maps(heatmaps, stage, landmarks)
        local, scores = np.zeros((num, 2)), np.zeros(num)
        for k in range(num):
            decoded, score = stage.head.decoder.decode(own[k])
            local[k], scores[k] = decoded[0, 0], score[0, 0]
        refined = self._patch_estimates(local, centers, extent, stage)
        radius = float(stage.test['neighbours']) * extent
        if radius > 0 and landmarks is None and heatmaps.shape[1] == num:
            refined = self._with_neighbour_estimates(refined, heatmaps, centers, extent, radius, stage)
        return refined, scores

    @staticmethod
    def _patch_estimates(local: np.ndarray, centers: np.ndarray, extent: float, stage: PatchStage) -> np.ndarray:
        """Decoded patch coordinates (``P x 2``) of the patches centred on ``centers`` -> image pixels; NaN where
        the landmark was lost: a flat heatmap (the landmark is not in its patch) makes the sub-pixel fit diverge,
        to metres away, so such an estimate, or one off the patch, counts as lost."""
        size = np.array(stage.patch_size, dtype=np.float64)
        lost = ~np.all(np.isfinite(local) & (local >= 0) & (local <= size), axis=1)
        refined = patch_to_image(local, centers, extent, stage.patch_size)
        refined[lost] = np.nan
        return refined

    @classmethod
    def reads_off_patches(cls, heatmaps: torch.Tensor, pairs: np.ndarray, centers: np.ndarray, extent: float,
                          stage: PatchStage) -> np.ndarray:
        """Landmark ``j`` read off the patch centred on ``centers[k]`` for each row ``(k, j)`` of ``pairs``, from
        the patches' heatmaps (``patches x K x h x w``): ``P x 2`` pixels of the stage's source, NaN where lost."""
        maps = heatmaps[torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])].float().cpu().numpy()
        local = np.stack([stage.head.decoder.decode(m[None])[0][0, 0] for m in maps])
        return cls._patch_estimates(local, centers[pairs[:, 0]], extent, stage)

    def _with_neighbour_estimates(self, refined: np.ndarray, heatmaps: torch.Tensor, centers: np.ndarray,
                                  extent: float, radius: float, stage: PatchStage) -> np.ndarray:
        """``test.neighbours``: every patch has a heatmap of every landmark (the local stage is trained on all
        landmarks in its patch), so landmark j is also read off the patch of each landmark k whose centre lies
        within ``radius`` (patch pixels of the source) of j's, and the found estimates of j (its own patch's
        and these) are averaged: more looks at the landmark from other cuts, at no extra network pass (the
        test-time shifts of ``test.shift`` cost one pass per shift)."""
        num = len(centers)
        distance = np.linalg.norm(centers[:, None, :] - centers[None, :, :], axis=2)  # [k, j]
        pairs = np.argwhere((distance <= radius) & ~np.eye(num, dtype=bool))
        if len(pairs) == 0:
            return refined
        others = self.reads_off_patches(heatmaps, pairs, centers, extent, stage)
        total = np.where(np.isfinite(refined), refined, 0.0)
        count = np.isfinite(refined).all(axis=1).astype(np.float64)
        found = np.isfinite(others).all(axis=1)
        np.add.at(total, pairs[found, 1], others[found])
        np.add.at(count, pairs[found, 1], 1.0)
        fused = total / np.maximum(count, 1.0)[:, None]
        return np.where((count > 0)[:, None], fused, np.nan)

    def refine_stage(self, stage: PatchStage, keypoints: np.ndarray, source: np.ndarray, factor: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Refine ``K x 2`` radiograph-pixel estimates with one patch stage on ``source`` (the radiograph
        reduced ``factor`` times): the refined ``K x 2`` keypoints and their heatmap scores. A landmark lost on
        every patch keeps its previous estimate."""
        reduction = stage.reduction(factor)
        scale = factor * reduction  # the stage's pixels per radiograph pixel
        extent = stage.level_extent(factor)
        offsets = self._test_offsets(extent, stage)
        levels = self._source_levels(source, stage, reduction)
        scores = np.zeros(len(keypoints))
        for _ in range(int(stage.test['iterations'])):
            centers = to_reduced(keypoints, scale)
            estimates, all_scores = zip(*(self._refine_once(centers + offset, levels, extent, stage)
                                          for offset in offsets))
            estimates = np.stack(estimates)  # cuts x K x 2
            found = np.isfinite(estimates).all(axis=2)
            mean = np.nansum(estimates, axis=0) / np.maximum(found.sum(axis=0), 1)[:, None]
            keypoints = np.where(found.any(axis=0)[:, None], from_reduced(mean, scale), keypoints)
            scores = np.mean(all_scores, axis=0)
        return keypoints, scores

    def refine(self, keypoints: np.ndarray, source: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
        """Refine ``K x 2`` radiograph-pixel estimates with every patch stage in turn (middle, then local) on
        ``source`` (the radiograph reduced ``factor`` times).

        Returns the refined ``K x 2`` keypoints and the last stage's heatmap scores. A landmark a stage loses on
        every patch keeps its previous estimate.
        """
        scores = np.zeros(len(keypoints))
        for stage in self.patch_stages:
            keypoints, scores = self.refine_stage(stage, keypoints, source, factor)
        return keypoints, scores

    def coarse_predict(self, inputs: torch.Tensor, data_samples: list) -> list:
        """The global stage's predictions (MMPose's top-down predict), which the local stage starts from.

        A method of its own so that diagnostics can replace the starting points (``benchmarks.cascade_oracle``
        centres the patches on the ground truth to measure the local stage alone).
        """
        return super().predict(inputs, data_samples)

    @staticmethod
    def starting_points(keypoints: np.ndarray, meta: dict) -> np.ndarray:
        """The global stage's estimates as the local stage starts from them: on the image. Its sub-pixel fit can
        diverge too (a flat heatmap), so non-finite points go to the corner and every point is clipped."""
        height, width = meta['ori_shape'][:2]
        coarse = np.asarray(keypoints, dtype=np.float64)
        return np.where(np.isfinite(coarse), coarse, 0.0).clip(0, [width - 1, height - 1])

    def predict(self, inputs: torch.Tensor, data_samples: list) -> list:
        results = self.coarse_predict(inputs, data_samples)
        if not self.test_cfg.get('refine', True):
            return results
        for sample in results:
            meta = sample.metainfo
            if 'source_img' not in meta:
                raise KeyError('CascadeLandmarkEstimator needs the source image: put KeepSourceImage before '
                               'TopdownAffine in the test pipeline')
            pred = sample.pred_instances
            coarse = self.starting_points(pred.keypoints, meta)
            refined = np.stack([self.refine(points, meta['source_img'], int(meta['source_factor']))[0]
                                for points in coarse])
            pred.coarse_keypoints = coarse.astype(np.float32)
            pred.keypoints = refined.astype(np.float32)
        return results


# ---------------------------------------------------------------------------------------- training schedule
@HOOKS.register_module()
class LocalStageScheduleHook(Hook):
    """Train the local stage (every patch stage: the middle one too, if any) over the first ``epochs`` epochs
    only: its LR follows a cosine to 0, then it is frozen while the global stage trains on.

    Why: trained from scratch on ~135 images, the local stage overfits long before the global stage has learned
    (ISBI senior: with patches centred on the truth the local stage errs by 1.20 mm after a 40-epoch schedule
    and 1.34 mm after 120 epochs, while the global stage alone improves from 2.29 to 2.05 mm). Once frozen, its
    patches are no longer cut or run, so the remaining epochs cost the global stage only.

    The local stage's LR is the global stage's times ``(1 + cos(pi * t / T)) / 2`` (t: epochs done, fractional;
    T = ``epochs``, or the run's max_epochs if fewer: a short budget trains the local stage throughout), so
    warm-up and the global cosine apply to both. Needs the local stage in
    parameter groups of its own: ``optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'refine_':
    dict(lr_mult=1.0)}))``. A run resumed after T freezes the local stage at its first iteration.
    """

    priority = 'LOW'  # after ParamSchedulerHook has set this iteration's LR

    def __init__(self, epochs: float) -> None:
        if not epochs > 0:
            raise ValueError(f'LocalStageScheduleHook: epochs must be > 0, got {epochs!r}')
        self.epochs = float(epochs)
        self._local_groups: list[dict] = []
        self._other_groups: list[dict] = []

    @staticmethod
    def _model(runner) -> 'CascadeLandmarkEstimator':
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not isinstance(model, CascadeLandmarkEstimator):
            raise TypeError(f'LocalStageScheduleHook: the model is a {type(model).__name__}, not a cascade')
        return model

    @staticmethod
    def _local_parameters(model: 'CascadeLandmarkEstimator') -> list[torch.nn.Parameter]:
        """Every patch stage's parameters (their modules' names all start with ``refine_``)."""
        return [param for stage in model.patch_stages for param in stage.parameters()]

    def before_train(self, runner) -> None:
        local_ids = {id(p) for p in self._local_parameters(self._model(runner))}
        groups = runner.optim_wrapper.optimizer.param_groups
        self._local_groups = [g for g in groups if all(id(p) in local_ids for p in g['params'])]
        self._other_groups = [g for g in groups if not any(id(p) in local_ids for p in g['params'])]
        if len(self._local_groups) + len(self._other_groups) != len(groups) or not self._other_groups \
                or sum(len(g['params']) for g in self._local_groups) != len(local_ids):
            raise ValueError("LocalStageScheduleHook: the local stage needs parameter groups of its own; set "
                             "optim_wrapper.paramwise_cfg=dict(custom_keys={'refine_': dict(lr_mult=1.0)})")

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = self._model(runner)
        if model.refine_frozen:
            return
        done = runner.epoch + batch_idx / max(len(runner.train_dataloader), 1)
        span = min(self.epochs, runner.max_epochs)
        if done >= span and span < runner.max_epochs:
            model.refine_frozen = True
            for param in self._local_parameters(model):
                param.requires_grad_(False)
                param.grad = None  # Adam and AdamW skip parameters without a gradient (no decay either)
            print_log(f'LocalStageScheduleHook: local stage frozen at epoch {done:.2f} of {runner.max_epochs}',
                      logger='current')
            return
        factor = 0.5 * (1.0 + math.cos(math.pi * done / span))
        reference = self._other_groups[0]['lr']
        for group in self._local_groups:
            group['lr'] = reference * factor


__all__: Sequence[str] = ('AntiAliasTopdownAffine', 'CascadeLandmarkEstimator', 'KeepSourceImage',
                          'LocalStageScheduleHook', 'PatchStage',
                          'SOURCE_META_KEYS', 'area_downscale', 'cut_patches', 'patch_to_image',
                          'patch_warp_matrix')
