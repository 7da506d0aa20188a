"""Landmark prediction on challenge stacks: the predictor behind step 5 and the grand-challenge container.

:class:`LandmarkPredictor` builds the model from an MMPose config with :func:`mmpose.apis.init_model`, loads
the checkpoint once (strictly: a checkpoint that does not fit the config is an error, not a warning), then
streams the slices of a stack one batch at a time. Each slice has its zero padding cropped (bottom and right
only, so pixel coordinates stay those of the stack), goes through the config's test pipeline with the
whole-image box that training and step 4 use (:func:`cldetection.dataset.whole_image_bbox`) and is predicted. The
keypoints MMPose returns are in input-image pixels, which are therefore stack pixels.

On a CPU the cascade's two networks can run in ONNX Runtime instead of PyTorch (``engine``, step 5's
``--engine``: :mod:`cldetection.inference_engine`); the rest of the prediction is the same code.

Checkpoints are read and checked by :mod:`cldetection.checkpoints` (``weights_only``: no code from a checkpoint
ever runs).
"""
from __future__ import annotations

import argparse
import logging
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .challenge_io import (DEFAULT_MAX_SLICES, LandmarkSet, StackInfo, crop_zero_padding, read_stack_info,
                           read_stack_slices)
from .checkpoints import check_weights_fit, checkpoint_state_dict, read_checkpoint
from .config_utils import disable_pretrained, load_config
from .dataset import whole_image_bbox
from .errors import InputError, claim_output, fail, first_line, releasing_claims
from .inference_engine import ENGINES, check_engine, load_engine, resolve_engine
from .landmarks import cephalometric_metainfo
from .metric import DEFAULT_RADII, format_table, radial_errors_mm, summarize_errors, write_csv
from .precision import fold_batch_norms as fold_into_convolutions

logger = logging.getLogger(__name__)

#: Slices per forward pass when ``batch_size`` is not given: batching pays on a GPU; on a CPU it only costs
#: memory (the convolutions already use every core for one image).
DEFAULT_BATCH_SIZE = {'cpu': 1, 'cuda': 8}
#: Pixel spacing of the challenge's images (mm), for measurements of a stack without ground truth.
CHALLENGE_SPACING_MM = 0.1
#: Per-landmark fields of a prediction, besides ``keypoints``, that :mod:`cldetection.confidence` reads when the
#: model gives them (a cascade gives the first four, an ensemble of cascades all five).
SIGNAL_FIELDS = ('coarse_keypoints', 'keypoint_scores', 'local_scores', 'local_spread', 'member_spread')


def resolve_device(device: str = 'auto') -> str:
    """``'auto'`` -> ``'cuda'`` when a GPU is usable, else ``'cpu'``; an explicit CUDA device must exist."""
    device = device.strip().lower()
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cpu':
        return device
    if re.fullmatch(r'cuda(:\d+)?', device):
        if not torch.cuda.is_available():
            fail(None, f'--device {device}: CUDA is not available here (torch {torch.__version__}); '
                       'use --device cpu or auto')
        index = int(device.partition(':')[2] or 0)
        if index >= torch.cuda.device_count():
            fail(None, f'--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible')
        return device
    fail(None, f'--device must be auto, cpu, cuda or cuda:N, got {device!r}')


def _load_config(config_file: Path):
    """The MMEngine config, with a one-line error for anything that keeps it from being usable here.

    Inference never needs pretrained initial weights, so any ``Pretrained`` ``init_cfg`` is switched off: no
    download, whatever the config says.
    """
    cfg = load_config(config_file)
    if 'model' not in cfg:
        fail(config_file, 'config has no "model"')
    try:
        cfg.test_dataloader.dataset.pipeline
    except AttributeError:
        fail(config_file, 'config has no test_dataloader.dataset.pipeline (needed to prepare images)')
    disable_pretrained(cfg)
    return cfg


def _dataset_meta(cfg, checkpoint: dict) -> dict:
    """Landmark metainfo: the checkpoint's (MMEngine saves the training set's), else from the config."""
    from mmpose.datasets.datasets.utils import parse_pose_metainfo

    meta = checkpoint.get('meta')
    if isinstance(meta, dict) and isinstance(meta.get('dataset_meta'), dict) \
            and 'flip_indices' in meta['dataset_meta']:
        return meta['dataset_meta']
    dataset_cfg = cfg.train_dataloader.dataset if 'train_dataloader' in cfg else cfg.test_dataloader.dataset
    if dataset_cfg.get('metainfo'):
        return parse_pose_metainfo(dataset_cfg.metainfo)
    num_landmarks = dataset_cfg.get('num_landmarks') or cfg.model.get('head', {}).get('out_channels')
    if not isinstance(num_landmarks, int):
        fail(cfg.filename, 'cannot tell the number of landmarks: no dataset metainfo or num_landmarks in the '
                           'config, no dataset_meta in the checkpoint, no head.out_channels')
    return parse_pose_metainfo(cephalometric_metainfo(num_landmarks))


@dataclass
class StackPrediction:
    """Predicted landmarks of a stack: ``points[z]`` is a ``K x 2`` float array in stack pixels (z 1-based),
    ``scores[z]`` the model's ``K`` confidences (heatmap peaks of the global stage for a cascade), ``signals[z]``
    the prediction's :data:`SIGNAL_FIELDS` (name -> ``K`` or ``K x 2`` array)."""
    stack: Path
    points: dict[int, np.ndarray]
    seconds: float  #: reading + preprocessing + inference of all slices; model loading excluded
    scores: dict[int, np.ndarray] = field(default_factory=dict)
    signals: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def seconds_per_slice(self) -> float:
        return self.seconds / max(len(self.points), 1)


class LandmarkPredictor:
    """An MMPose top-down landmark model, loaded once, that predicts whole stacks.

    Args:
        config_file: the MMPose config the model was trained with.
        checkpoint_file: its weights (an MMEngine ``.pth`` checkpoint).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: slices per forward pass (default 1 on CPU, 8 on CUDA).
        fold_batch_norms: fold the batch norms into their convolutions (a speed setting; the same predictions up
            to float rounding, see :func:`cldetection.precision.fold_batch_norms`).
        engine: what runs a cascade's networks: ``pytorch``, ``onnxruntime`` (exported to ONNX files cached
            beside the checkpoint, see :mod:`cldetection.inference_engine`) or ``auto`` (ONNX Runtime on a CPU
            where it applies, else PyTorch). ``pytorch`` by default here, because the other engines write files
            beside the checkpoint; the command lines default to ``auto``.
    """

    def __init__(self, config_file: str | Path, checkpoint_file: str | Path, device: str = 'auto',
                 batch_size: Optional[int] = None, fold_batch_norms: bool = True, engine: str = 'pytorch') -> None:
        from mmengine.dataset import Compose
        from mmengine.runner.checkpoint import load_state_dict
        from mmpose.apis import init_model

        started = time.perf_counter()
        self.config_file, self.checkpoint_file = Path(config_file), Path(checkpoint_file)
        self.device = resolve_device(device)
        requested = check_engine(engine)  # a misspelt engine fails before the (long) model load
        if batch_size is not None and batch_size < 1:
            fail(None, f'--batch-size must be >= 1, got {batch_size}')
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE[self.device.split(':')[0]]
        cfg = _load_config(self.config_file)
        checkpoint = read_checkpoint(self.checkpoint_file)
        state = checkpoint_state_dict(checkpoint, self.checkpoint_file)
        try:
            # cfg_options={} (not None): init_model's own pretrained switch reads cfg.model.backbone, which a
            # LandmarkEnsemble's model has not; _load_config has already switched every Pretrained init_cfg off
            model = init_model(cfg, checkpoint=None, device='cpu', cfg_options={})
        except Exception as err:
            fail(self.config_file, f'cannot build the model: {type(err).__name__}: {first_line(err)}')
        check_weights_fit(model, state, self.checkpoint_file, self.config_file)
        load_state_dict(model, state, strict=True)
        model.dataset_meta = _dataset_meta(cfg, checkpoint)
        self.model = model.to(self.device).eval()
        if fold_batch_norms:
            fold_into_convolutions(self.model)
        self.engine = resolve_engine(requested, self.model, self.device, folded=fold_batch_norms)
        if self.engine != 'pytorch':
            try:
                self.model.set_engine(load_engine(self.engine, self.model, self.checkpoint_file,
                                                  int8_if_present=requested == 'auto'))
                self.engine = self.model.engine.name
            except InputError:  # already one line naming the file (e.g. no int8 networks for these weights)
                raise
            except Exception as err:  # the exporter's or the runtime's, in one line
                problem = f'cannot run the model in {self.engine}: {type(err).__name__}: {first_line(err)}'
                if requested != 'auto':
                    fail(self.checkpoint_file, f'{problem} (--engine pytorch avoids it)')
                logger.warning('%s; predicting with pytorch', problem)  # auto: slower, but a prediction
                self.engine = 'pytorch'
        self.num_landmarks = int(model.dataset_meta['num_keypoints'])
        self.pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
        self.load_seconds = time.perf_counter() - started
        logger.info('loaded %s + %s on %s in %.1f s (%d landmarks, batch size %d, engine %s)', self.config_file.name,
                    self.checkpoint_file.name, self.device, self.load_seconds, self.num_landmarks, self.batch_size,
                    self.engine)

    # ------------------------------------------------------------------------------------------ images
    def prepare(self, image_rgb: np.ndarray) -> dict:
        """One image through the test pipeline, as ``mmpose.apis.inference_topdown`` does for one box.

        We do not call ``inference_topdown`` itself because it forwards one image per call; here several
        slices share a forward pass. The stack holds RGB; training images are PNGs that OpenCV loads as BGR
        (and the data preprocessor turns back into RGB), so we hand the pipeline BGR too.
        """
        height, width = image_rgb.shape[:2]
        # OpenCV's channel swap, not NumPy's reversed view made contiguous: the same array, 1 instead of 30 ms for a
        # 2400 x 1935 radiograph on an idle AVX2 EPYC core (64 on a busy one): 5-10 % of step 5's CPU time per image
        # once the networks run in an engine
        data_info = dict(img=cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
                         bbox=whole_image_bbox(width, height),
                         bbox_score=np.ones(1, dtype=np.float32))
        data_info.update(self.model.dataset_meta)
        return self.pipeline(data_info)

    def _forward(self, samples: list[dict]) -> list[dict[str, np.ndarray]]:
        """Per prepared sample of a batch: ``keypoints`` (``K x 2``) and the model's :data:`SIGNAL_FIELDS`."""
        from mmengine.dataset import pseudo_collate

        with torch.no_grad():
            results = self.model.test_step(pseudo_collate(samples))
        fields = []
        for result in results:
            instances = result.pred_instances
            fields.append({name: np.asarray(instances.get(name), dtype=np.float64)[0]
                           for name in ('keypoints', *SIGNAL_FIELDS) if name in instances})
            if len(fields[-1]['keypoints']) != self.num_landmarks:
                fail(self.checkpoint_file, f'the model predicts {len(fields[-1]["keypoints"])} landmarks but its '
                                           f'metainfo lists {self.num_landmarks}')
        return fields

    def predict_with_signals(self, images_rgb: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per ``H x W x 3`` uint8 RGB image (no padding to crop): ``keypoints`` (``K x 2``, its pixels) and the
        model's :data:`SIGNAL_FIELDS`."""
        return [fields for i in range(0, len(images_rgb), self.batch_size)
                for fields in self._forward([self.prepare(img) for img in images_rgb[i:i + self.batch_size]])]

    def predict_images(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """Landmarks (``N x K x 2``, input pixels) of ``H x W x 3`` uint8 RGB images (no padding to crop)."""
        out = [fields['keypoints'] for fields in self.predict_with_signals(images_rgb)]
        return np.stack(out) if out else np.zeros((0, self.num_landmarks, 2))

    # ------------------------------------------------------------------------------------------ stacks
    def _prepared_batches(self, info: StackInfo, slices: Optional[Iterable[int]]) -> Iterator[tuple[list[int], list[dict]]]:
        batch_z: list[int] = []
        batch: list[dict] = []
        for z, padded in read_stack_slices(info.path, slices, info=info):
            image = crop_zero_padding(padded)
            if not image.any():
                fail(info.path, f'slice {z} is empty (all zero)')
            batch_z.append(z)
            batch.append(self.prepare(image))
            if len(batch) == self.batch_size:
                yield batch_z, batch
                batch_z, batch = [], []
        if batch:
            yield batch_z, batch

    def predict_stack(self, stack_path: str | Path, slices: Optional[Sequence[int]] = None,
                      progress: bool = True, info: Optional[StackInfo] = None) -> StackPrediction:
        """Predict every slice (or ``slices``) of a challenge stack; coordinates in stack pixels.

        Reading and preprocessing of the next batch run in a background thread while the model works on
        the current one, so a GPU does not wait for the disk.
        """
        info = info or read_stack_info(stack_path)
        total = info.num_slices if slices is None else len(slices)
        points: dict[int, np.ndarray] = {}
        scores: dict[int, np.ndarray] = {}
        signals: dict[int, dict[str, np.ndarray]] = {}
        started, cpu_started = time.perf_counter(), time.process_time()
        batches = self._prepared_batches(info, slices)
        with ThreadPoolExecutor(max_workers=1) as reader, \
                tqdm(total=total, desc=f'predict {info.path.name}', unit='slice', disable=not progress) as bar:
            pending = reader.submit(next, batches, None)
            while (item := pending.result()) is not None:
                pending = reader.submit(next, batches, None)
                batch_z, batch = item
                for z, sample, fields in zip(batch_z, batch, self._forward(batch)):
                    points[z] = fields.pop('keypoints')
                    _warn_outside(info.path, z, points[z], sample['data_samples'].metainfo['ori_shape'])
                    scores[z] = fields.get('keypoint_scores', np.full(self.num_landmarks, np.nan))
                    signals[z] = fields
                bar.update(len(batch_z))
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        # the CPU seconds (all threads) say how much of the machine a slice takes, which the wall time on a shared
        # machine does not
        logger.info('%s: %d slices in %.2f s (%.3f s per slice, %.3f CPU s per slice, model load excluded)',
                    info.path.name, len(points), seconds, seconds / max(len(points), 1),
                    cpu_seconds / max(len(points), 1))
        return StackPrediction(info.path, points, seconds, scores, signals)


def _warn_outside(stack: Path, z: int, points: np.ndarray, shape: Sequence[int]) -> None:
    """Say so when a slice's landmark lies outside its image (a model can put one there; the JSON keeps it)."""
    from .confidence import review_flags

    height, width = shape[:2]
    flags, _ = review_flags(points, None, width, height, math.inf)
    if flags.any():
        logger.warning('%s slice %d: landmark %s predicted outside the image (%d x %d px): check it', stack.name, z,
                       ', '.join(f'{k + 1} at ({points[k, 0]:.1f}, {points[k, 1]:.1f})' for k in np.flatnonzero(flags)),
                       width, height)


# -------------------------------------------------------------------------------------------- evaluation
def evaluate_points(points: dict[int, np.ndarray], ground_truth: LandmarkSet,
                    radii: Sequence[float] = DEFAULT_RADII) -> dict[str, Any]:
    """MRE / SDR of predicted ``points[z]`` (``K x 2``) against the ground truth's slices.

    Every ground-truth slice must have a prediction; landmarks the ground truth lacks are left out (as
    invisible ones are by the training metric). Spacing comes from the ground truth.
    """
    num_landmarks = ground_truth.num_landmarks
    uncovered = [z for z in ground_truth.slices if z not in points]
    if uncovered:
        fail(ground_truth.path, f'ground truth has slice {uncovered[0]} but the prediction does not '
                                f'({len(uncovered)} such slices)')
    for z in ground_truth.slices:
        if len(points[z]) < num_landmarks:
            fail(ground_truth.path, f'ground truth has {num_landmarks} landmarks, the prediction of slice {z} '
                                    f'only {len(points[z])}')
    pred = np.stack([np.asarray(points[z], dtype=np.float64)[:num_landmarks] for z in ground_truth.slices])
    gt, visible = zip(*(ground_truth.as_array(z, num_landmarks) for z in ground_truth.slices))
    spacing = np.array([ground_truth.spacing[z] for z in ground_truth.slices])
    errors = radial_errors_mm(pred, np.stack(gt), spacing)
    metrics: dict[str, Any] = summarize_errors(errors, np.stack(visible), radii)
    metrics['images'] = len(ground_truth.slices)
    metrics['landmarks'] = int(np.count_nonzero(np.stack(visible)))
    return metrics


def metrics_report(metrics: dict[str, Any]) -> str:
    """The metrics as printed by step 5: counts, then the MRE/SDR table."""
    return (f'{metrics["images"]} images, {metrics["landmarks"]} landmarks scored\n'
            + format_table({k: v for k, v in metrics.items() if k not in ('images', 'landmarks')}))


# ---------------------------------------------------------------------------------------------- step 5
def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--batch-size`` and ``--engine`` (shared by step 5 and process.py)."""
    parser.add_argument('--device', default='auto',
                        help='auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default: auto)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='slices per forward pass (default: 8 on CUDA, 1 on CPU)')
    parser.add_argument('--engine', default='auto',
                        help=f'what runs the networks: {", ".join(ENGINES)} (default: auto = onnxruntime on a CPU for '
                             'a cascade predicting in float32 there, when onnxruntime and onnx are installed, with '
                             'the ONNX files cached in <weights>.onnx/ beside the weights, and their int8 versions '
                             'when python -m cldetection.quantize has made them; else pytorch, e.g. on CUDA, on a '
                             'CPU with bfloat16 hardware, and for models that are not cascades, which only pytorch '
                             'runs)')


def analysis_csv_path(save_json_path: str | Path) -> Path:
    """Where step 5's ``--analysis`` writes the measurements: ``<json stem>_analysis.csv`` beside the JSON."""
    save_json_path = Path(save_json_path)
    return save_json_path.with_name(f'{save_json_path.stem}_analysis.csv')


def write_stack_analysis(points: dict[int, np.ndarray], path: str | Path, spacing: dict[int, float]) -> Path:
    """The cephalometric measurements and classes of every slice (``points[z]``: K x 2, K >= 19) as CSV."""
    from .analysis import analyse_landmarks, measurement_row

    rows = [measurement_row(z, analyse_landmarks(points[z], spacing[z], source=f'slice {z}'), key='slice')
            for z in sorted(points)]
    return write_csv(rows, path)


@releasing_claims()  # the outputs are claimed first; a failed run leaves none of them behind
def predict_stack_to_json(config_file: str | Path, checkpoint_file: str | Path, stack_path: str | Path,
                          save_json_path: str | Path, *, device: str = 'auto', batch_size: Optional[int] = None,
                          engine: str = 'pytorch',
                          gt_json: Optional[str | Path] = None, slices: Optional[Sequence[int]] = None,
                          overwrite: bool = False, progress: bool = True, analysis: bool = False,
                          spacing: float = CHALLENGE_SPACING_MM, pseudo_gt_path: Optional[str | Path] = None,
                          max_slices: int = DEFAULT_MAX_SLICES,
                          ) -> tuple[StackPrediction, Optional[dict[str, Any]]]:
    """Step 5: predict a stack, write the challenge prediction JSON, and score it if ``gt_json`` is given.

    ``slices`` (1-based) limits prediction -- and the scoring -- to those slices, e.g. a test split; by default
    every slice is predicted and every slice of the ground truth is scored. With ``analysis``, the
    cephalometric measurements of every predicted slice go to :func:`analysis_csv_path` (MW in mm with the
    ground truth's spacing for its slices, else ``spacing``). With ``pseudo_gt_path``, the prediction is also
    written in the ground-truth layout (``train-gt.json``, ``scale`` chosen the same way) so that step 2's
    ``--extra_train`` can train on it (self-training). ``engine``: see :class:`LandmarkPredictor`. Everything
    that can be checked before the (long) prediction is checked first -- the output paths, the engine's name,
    the stack, the ground truth against the stack -- and the outputs are written atomically, so a failed run
    writes nothing. Returns the prediction and the metrics (``None`` without ``gt_json``).
    """
    from .analysis import NUM_ANALYSIS_LANDMARKS
    from .challenge_io import (ground_truth_document, load_landmarks, numbered_points, prediction_document,
                               write_json_atomic)

    check_engine(engine)
    if pseudo_gt_path is not None and Path(pseudo_gt_path).resolve() == Path(save_json_path).resolve():
        fail(pseudo_gt_path, 'is also --save_json_path; the pseudo ground truth needs a file of its own')
    save_json_path = claim_output(save_json_path, overwrite).path  # claimed: created or locked, until we return
    analysis_path = claim_output(analysis_csv_path(save_json_path), overwrite).path if analysis else None
    if pseudo_gt_path is not None:
        pseudo_gt_path = claim_output(pseudo_gt_path, overwrite).path
    if (analysis or pseudo_gt_path is not None) and not (math.isfinite(spacing) and spacing > 0):
        fail(None, f'--spacing must be a number > 0 (mm per pixel), got {spacing}')
    info = read_stack_info(stack_path, max_slices)
    if slices is not None:
        slices = sorted({int(z) for z in slices})
        if not slices or not 1 <= slices[0] <= slices[-1] <= info.num_slices:
            fail(info.path, f'slices to predict must lie in 1..{info.num_slices}, got {slices[:10]}')
    ground_truth = None
    if gt_json is not None:
        ground_truth = load_landmarks(gt_json, require_spacing=True)
        outside = [z for z in ground_truth.slices if z > info.num_slices]
        if outside:
            fail(ground_truth.path, f'has slice {outside[0]} but {info.path.name} has {info.num_slices} slices')
        if slices is not None:
            unlabelled = [z for z in slices if z not in ground_truth.points]
            if unlabelled:
                fail(ground_truth.path, f'has no points for slice {unlabelled[0]} ({len(unlabelled)} of the '
                                        f'{len(slices)} slices to predict)')
            ground_truth = ground_truth.subset(slices)
    predictor = LandmarkPredictor(config_file, checkpoint_file, device=device, batch_size=batch_size, engine=engine)
    if ground_truth is not None and ground_truth.num_landmarks > predictor.num_landmarks:
        fail(ground_truth.path, f'has {ground_truth.num_landmarks} landmarks, the model predicts '
                                f'{predictor.num_landmarks}')
    if analysis and predictor.num_landmarks < NUM_ANALYSIS_LANDMARKS:
        fail(checkpoint_file, f'the model predicts {predictor.num_landmarks} landmarks; the cephalometric '
                              f'analysis needs the {NUM_ANALYSIS_LANDMARKS} ISBI landmarks')
    prediction = predictor.predict_stack(info.path, slices=slices, progress=progress, info=info)
    metrics = evaluate_points(prediction.points, ground_truth) if ground_truth is not None else None
    write_json_atomic(prediction_document(prediction.points), save_json_path)
    logger.info('wrote %s (%d slices x %d landmarks)', save_json_path, len(prediction.points),
                predictor.num_landmarks)
    known = ground_truth.spacing if ground_truth is not None else {}
    slice_spacing = {z: known.get(z, spacing) for z in prediction.points}
    if analysis_path is not None:
        write_stack_analysis(prediction.points, analysis_path, slice_spacing)
        logger.info('wrote %s (cephalometric measurements of %d slices)', analysis_path, len(prediction.points))
    if pseudo_gt_path is not None:
        points = {z: numbered_points(xy) for z, xy in prediction.points.items()}
        write_json_atomic(ground_truth_document(points, slice_spacing), pseudo_gt_path)
        logger.info('wrote %s (the prediction as ground truth of %d slices)', pseudo_gt_path, len(points))
    return prediction, metrics
