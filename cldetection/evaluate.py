"""Step 4: test a checkpoint on one split, write the metrics, the CSVs, plots and per-image overlays.

Testing is MMEngine's ``Runner.test`` with our ``CephalometricMetric`` (which writes ``per_landmark.csv`` and
``per_image.csv``); a small hook keeps each image's prediction for the overlays. Outputs in ``out_dir``:

* ``metrics.json``: exactly the metric's keys (``MRE``, ``MRE_SD``, ``SDR 2.0mm`` ... in mm and percent);
* ``per_landmark.csv``, ``per_image.csv`` (``error_<k>`` columns: each landmark's radial error in mm);
* ``per_landmark_mre.png`` and ``sdr_curve.png``, both computed from ``per_image.csv``;
* ``analysis.csv`` (data with at least the 19 ISBI landmarks): per image, each cephalometric measurement of
  :mod:`cldetection.analysis` from the prediction and from the ground truth, and both classes; the share of
  images whose predicted class equals the ground truth's is in :attr:`EvaluationResult.analysis_agreement`;

and with ``show_dir``, one ``<image>.jpg`` overlay per image (see :func:`cldetection.visualize.draw_overlay`),
plus ``analysis/<image>.jpg`` with the analysis lines and angles of the prediction and a legend of predicted
and ground-truth values (see :func:`cldetection.visualize.draw_analysis_overlay`).
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
from mmengine.config import Config
from mmengine.hooks import Hook
from tqdm import tqdm

from .analysis import NUM_ANALYSIS_LANDMARKS, Measurement, analyse_landmarks, class_agreement, comparison_row
from .challenge_io import write_json_atomic
from .compat import unsafe_checkpoint_global
from .config_utils import check_dataset_files, disable_pretrained, load_config
from .errors import fail, first_line
from .metric import write_csv
from .visualize import (draw_analysis_overlay, draw_overlay, plot_per_landmark_mre, plot_sdr_curve,
                        read_per_image_errors, read_per_landmark_rows)

logger = logging.getLogger(__name__)

#: ``--split`` -> the dataloader whose dataset (annotation file, images) is tested.
SPLIT_DATALOADERS: dict[str, str] = {'train': 'train_dataloader', 'valid': 'val_dataloader',
                                     'test': 'test_dataloader'}
METRICS_FILE = 'metrics.json'
PER_LANDMARK_CSV = 'per_landmark.csv'
PER_IMAGE_CSV = 'per_image.csv'
ANALYSIS_CSV = 'analysis.csv'
ANALYSIS_OVERLAY_DIR = 'analysis'


def _innermost_dataset(dataset: dict) -> dict:
    while isinstance(dataset.get('dataset'), dict) and 'ann_file' not in dataset:  # dataset wrappers
        dataset = dataset['dataset']
    return dataset


def build_test_config(config: str | Path, checkpoint: str | Path, *, split: str = 'test',
                      out_dir: str | Path, cfg_options: Optional[dict[str, Any]] = None) -> Config:
    """The config's test setup (pipeline, evaluator) on the images and annotations of ``split``."""
    if split not in SPLIT_DATALOADERS:
        fail(None, f'split must be one of {", ".join(SPLIT_DATALOADERS)}, got {split!r}')
    if not Path(checkpoint).is_file():
        fail(checkpoint, 'weights file not found' if not Path(checkpoint).exists() else 'weights path is not a file')
    cfg = load_config(config, cfg_options)
    disable_pretrained(cfg)  # the checkpoint holds the weights; nothing to download
    for key in ('test_dataloader', 'test_evaluator', SPLIT_DATALOADERS[split]):
        if not isinstance(cfg.get(key), dict):
            fail(config, f'config has no {key} (a dict) to test with')

    source = _innermost_dataset(cfg[SPLIT_DATALOADERS[split]]['dataset'])
    dataset = copy.deepcopy(_innermost_dataset(cfg.test_dataloader.dataset))
    for key in ('type', 'data_root', 'ann_file', 'data_prefix', 'num_landmarks', 'metainfo'):
        if key in source:
            dataset[key] = copy.deepcopy(source[key])
    dataset['test_mode'] = True  # the test pipeline (no augmentation) on any split
    cfg.test_dataloader.dataset = dataset
    cfg.test_dataloader.sampler = dict(type='DefaultSampler', shuffle=False, round_up=False)

    cfg.test_evaluator = dict(copy.deepcopy(cfg.test_evaluator), output_dir=str(out_dir))
    cfg.work_dir = str(out_dir)
    cfg.launcher = 'none'
    cfg.load_from = None  # loaded strictly by evaluate(), not leniently by the runner
    cfg.custom_hooks = [hook for hook in cfg.get('custom_hooks', []) if not _is_ema_hook(hook)]
    cfg.resume = False
    cfg.experiment_name = f'{Path(config).stem}_{split}'
    check_dataset_files(cfg, ('test_dataloader',))
    return cfg


def _is_ema_hook(hook: Any) -> bool:
    """Whether a ``custom_hooks`` entry is MMEngine's ``EMAHook`` (or a subclass). Testing leaves it out: the
    checkpoint's ``state_dict`` already holds the averaged weights (the hook swaps them in before saving), and the
    hook cannot load a checkpoint before its ``before_run`` has built the average, which a runner whose weights are
    loaded before ``test()`` (as here) never calls: step 4 failed with "'EMAHook' object has no attribute
    'ema_model'"."""
    from mmengine.hooks import EMAHook
    from mmengine.registry import HOOKS

    kind = hook.get('type') if isinstance(hook, dict) else type(hook)
    if isinstance(kind, str):
        kind = HOOKS.get(kind)
    return isinstance(kind, type) and issubclass(kind, EMAHook)


@dataclass
class ImagePrediction:
    """One tested image: ground truth and prediction in image pixels, visibility, spacing (mm / px)."""
    img_path: str
    img_id: Any
    spacing: float
    gt: np.ndarray
    pred: np.ndarray
    visible: np.ndarray


class PredictionCollector(Hook):
    """Keeps what the test loop predicted for every image (for the overlays)."""

    def __init__(self) -> None:
        self.predictions: list[ImagePrediction] = []

    def after_test_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        for sample in outputs or []:
            gt = sample.gt_instances
            self.predictions.append(ImagePrediction(
                img_path=sample.metainfo['img_path'], img_id=sample.metainfo.get('img_id'),
                spacing=float(sample.metainfo['spacing']),
                gt=np.asarray(gt.keypoints, dtype=np.float64).reshape(-1, 2),
                pred=np.asarray(sample.pred_instances.keypoints, dtype=np.float64).reshape(-1, 2),
                visible=np.asarray(gt.keypoints_visible).reshape(-1) > 0))


@dataclass
class ImageAnalysis:
    """The cephalometric measurements of one tested image, from its prediction and its ground truth."""
    prediction: ImagePrediction
    predicted: dict[str, Measurement]
    ground_truth: dict[str, Measurement]


def analyse_predictions(predictions: list[ImagePrediction]) -> list[ImageAnalysis]:
    """Measurements of every image (empty when the data has fewer than the 19 ISBI landmarks)."""
    if not predictions or min(len(p.pred) for p in predictions) < NUM_ANALYSIS_LANDMARKS:
        logger.info('no cephalometric analysis: it needs the %d ISBI landmarks', NUM_ANALYSIS_LANDMARKS)
        return []
    return [ImageAnalysis(p, analyse_landmarks(p.pred, p.spacing, source=p.img_path),
                          analyse_landmarks(p.gt, p.spacing, visible=p.visible, source=p.img_path))
            for p in predictions]


@dataclass
class EvaluationResult:
    metrics: dict[str, float]
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    overlays: list[Path] = field(default_factory=list)
    #: measurement -> (images whose predicted class equals the ground truth's, images compared); empty when
    #: the data has fewer than 19 landmarks
    analysis_agreement: dict[str, tuple[int, int]] = field(default_factory=dict)


def check_checkpoint(cfg: Config, checkpoint: Path, config: str | Path) -> None:
    """Step 5's checks of a checkpoint, before the runner writes anything (log folder, config copy): a missing
    or unreadable file, a file that is not a checkpoint, a truncated or damaged one, and weights that do not
    fit the config's model are each a one-line error worded as step 5's (:func:`cldetection.checkpoints.read_checkpoint`,
    :func:`cldetection.checkpoints.check_weights_fit`)."""
    from mmpose.apis import init_model

    from .checkpoints import check_weights_fit, checkpoint_state_dict, read_checkpoint

    state = checkpoint_state_dict(read_checkpoint(checkpoint), checkpoint)
    try:
        # cfg_options={}: as in LandmarkPredictor (a LandmarkEnsemble's model has no backbone to switch off)
        model = init_model(copy.deepcopy(cfg), checkpoint=None, device='cpu', cfg_options={})
    except Exception as err:
        fail(config, f'cannot build the model: {type(err).__name__}: {first_line(err)}')
    check_weights_fit(model, state, checkpoint, Path(config))


def _load_weights(runner, checkpoint: Path, config: str | Path) -> None:
    """Load strictly: a checkpoint that does not fit the config is an error (MMEngine would only warn)."""
    try:
        runner.load_checkpoint(str(checkpoint), map_location='cpu', strict=True)
    except RuntimeError as err:
        if 'loading state_dict' not in str(err):
            fail(checkpoint, f'cannot read the weights: {type(err).__name__}: {first_line(err)}')
        details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        fail(checkpoint, f'weights do not fit the model of {Path(config).name}: '
                         f'{(details[0] if details else str(err))[:300]}')
    except Exception as err:
        unsafe = unsafe_checkpoint_global(err)
        problem = (f'holds the Python object {unsafe}, which torch will not load with weights_only'
                   if unsafe else f'{type(err).__name__}: {first_line(err)}')
        fail(checkpoint, f'cannot load the checkpoint: {problem}')


def build_test_runner(config: str | Path, checkpoint: str | Path, *, split: str = 'test', out_dir: str | Path,
                      cfg_options: Optional[dict[str, Any]] = None):
    """An MMEngine ``Runner`` set up as step 4 tests (:func:`build_test_config`), with the weights loaded
    strictly. For diagnostics that drive the test loop themselves (``benchmarks.studies.cascade_oracle`` and others)."""
    from mmengine.runner import Runner

    cfg = build_test_config(config, checkpoint, split=split, out_dir=out_dir, cfg_options=cfg_options)
    check_checkpoint(cfg, Path(checkpoint), config)
    runner = Runner.from_cfg(cfg)
    _load_weights(runner, Path(checkpoint), config)
    return runner


def evaluate(config: str | Path, checkpoint: str | Path, *, split: str = 'test',
             out_dir: Optional[str | Path] = None, show_dir: Optional[str | Path] = None,
             cfg_options: Optional[dict[str, Any]] = None) -> EvaluationResult:
    """Test ``checkpoint`` on ``split`` and write metrics, CSVs, plots (and overlays with ``show_dir``).

    ``out_dir`` defaults to ``<checkpoint folder>/eval_<split>``; files of the same names there are replaced.
    """
    from mmengine.runner import Runner

    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir) if out_dir is not None else checkpoint.parent / f'eval_{split}'
    cfg = build_test_config(config, checkpoint, split=split, out_dir=out_dir, cfg_options=cfg_options)
    check_checkpoint(cfg, checkpoint, config)  # before the runner writes its log folder and config copy
    out_dir.mkdir(parents=True, exist_ok=True)

    runner = Runner.from_cfg(cfg)
    collector = PredictionCollector()
    runner.register_hook(collector, priority='LOWEST')
    _load_weights(runner, checkpoint, config)
    metrics = {k: float(v) for k, v in runner.test().items()}

    files = {'metrics': out_dir / METRICS_FILE, 'per_landmark': out_dir / PER_LANDMARK_CSV,
             'per_image': out_dir / PER_IMAGE_CSV}
    write_json_atomic(metrics, files['metrics'])
    errors = read_per_image_errors(files['per_image'])
    files['per_landmark_mre'] = plot_per_landmark_mre(read_per_landmark_rows(files['per_landmark']),
                                                      out_dir / 'per_landmark_mre.png', overall_mre=metrics['MRE'])
    files['sdr_curve'] = plot_sdr_curve(errors, out_dir / 'sdr_curve.png')

    analyses = analyse_predictions(collector.predictions)
    agreement = {}
    if analyses:
        files['analysis'] = write_csv([comparison_row(Path(a.prediction.img_path).name, a.predicted, a.ground_truth)
                                       for a in analyses], out_dir / ANALYSIS_CSV)
        agreement = class_agreement([a.predicted for a in analyses], [a.ground_truth for a in analyses])

    overlays = write_overlays(collector.predictions, show_dir, analyses) if show_dir is not None else []
    logger.info('tested %s on %d images of the %s split; results in %s', checkpoint.name,
                len(collector.predictions), split, out_dir)
    return EvaluationResult(metrics=metrics, out_dir=out_dir, files=files, overlays=overlays,
                            analysis_agreement=agreement)


def _write_jpeg(image: np.ndarray, path: Path) -> Path:
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92]):
        fail(path, 'cannot write the overlay image')
    return path


def write_overlays(predictions: list[ImagePrediction], show_dir: str | Path,
                   analyses: Optional[list[ImageAnalysis]] = None) -> list[Path]:
    """One ``<image name>.jpg`` per image: ground truth, prediction, error lines and landmark numbers; with
    ``analyses`` (one per prediction) also ``analysis/<image name>.jpg``: the analysis of the prediction."""
    show_dir = Path(show_dir)
    show_dir.mkdir(parents=True, exist_ok=True)
    if analyses:
        (show_dir / ANALYSIS_OVERLAY_DIR).mkdir(exist_ok=True)
    written = []
    for i, p in enumerate(tqdm(predictions, desc='overlays', unit='image')):
        image = cv2.imread(p.img_path, cv2.IMREAD_COLOR)
        if image is None:
            fail(p.img_path, 'cannot read the image to draw its overlay')
        name = Path(p.img_path)
        overlay = draw_overlay(image, p.gt, p.pred, p.visible, p.spacing, title=name.name)
        written.append(_write_jpeg(overlay, show_dir / f'{name.stem}.jpg'))
        if analyses:
            analysis = draw_analysis_overlay(image, p.pred, analyses[i].predicted, analyses[i].ground_truth,
                                             title=f'{name.name}: analysis of the prediction')
            written.append(_write_jpeg(analysis, show_dir / ANALYSIS_OVERLAY_DIR / f'{name.stem}.jpg'))
    return written
