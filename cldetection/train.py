"""Step 3: train (with validation) on MMEngine's runner, from a config and a few command-line switches.

Everything here only adjusts the config; training itself is MMEngine's ``Runner.train``. Multi-GPU training is
MMEngine's distributed launcher::

    torchrun --nproc_per_node 4 step3_train_and_evaluation.py CONFIG --launcher pytorch

(on CPU the ``nccl`` backend cannot work, so the ``gloo`` backend is chosen automatically).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch
from mmengine.config import Config

from .config_utils import check_dataset_files, dataset_ann_path, disable_pretrained, load_config
from .errors import InputError, fail

logger = logging.getLogger(__name__)

#: ``--resume`` without a path: continue from the latest checkpoint in the work dir.
RESUME_LATEST = 'auto'


def default_work_dir(config_path: str | Path) -> Path:
    """``work_dirs/<config name>``, as MMPose's own tools do."""
    return Path('work_dirs') / Path(config_path).stem


def latest_checkpoint(work_dir: str | Path) -> Optional[Path]:
    """The checkpoint MMEngine's ``last_checkpoint`` file in ``work_dir`` points at, if any."""
    pointer = Path(work_dir) / 'last_checkpoint'
    if not pointer.is_file():
        return None
    path = Path(pointer.read_text().strip())
    if path.is_file():
        return path
    if (Path(work_dir) / path.name).is_file():  # written relative to another working directory
        return Path(work_dir) / path.name
    fail(pointer, f'points at {path}, which does not exist; pass the checkpoint to --resume explicitly')


def build_train_config(config: str | Path, *, work_dir: Optional[str | Path] = None,
                       resume: Optional[str] = None, amp: bool = False,
                       cfg_options: Optional[dict[str, Any]] = None, launcher: str = 'none',
                       seed: Optional[int] = None, no_pretrained: bool = False,
                       no_validate: bool = False) -> Config:
    """The training config: ``config`` plus the command-line switches of step 3.

    Args:
        config: MMEngine config file.
        work_dir: logs and checkpoints; default ``work_dirs/<config name>``.
        resume: ``None`` (start fresh), ``'auto'`` (latest checkpoint in ``work_dir``) or a checkpoint path.
        amp: mixed precision (``AmpOptimWrapper``); needs a CUDA GPU.
        cfg_options: config overrides (``data_root``, ``pretrained``, ``num_landmarks`` propagate).
        launcher: ``'none'`` or ``'pytorch'`` (torchrun).
        seed: fixed seed with deterministic algorithms; ``None``: a random seed, recorded in checkpoints.
        no_pretrained: switch off any ImageNet ``init_cfg`` (offline use).
        no_validate: train without a validation loop (a final model on every labelled image, e.g. step 2 with
            ``--ratios 1 0 0``): no ``best_*.pth``; the last checkpoint (named by the work dir's
            ``last_checkpoint``) is the model.
    """
    cfg = load_config(config, cfg_options)
    if isinstance(cfg.get('model'), dict) and cfg.model.get('type') == 'LandmarkEnsemble':
        fail(config, 'is an ensemble of trained models (python -m cldetection.ensemble), which only predicts; '
                     'train each member with its own config')
    cfg.launcher = launcher
    cfg.work_dir = str(work_dir if work_dir is not None else cfg.get('work_dir') or default_work_dir(config))

    if amp:
        if not torch.cuda.is_available():
            fail(None, '--amp needs a CUDA GPU (mixed precision on CPU is not supported by MMEngine\'s '
                       'AmpOptimWrapper); drop --amp to train in full precision')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if resume is not None:
        if resume == RESUME_LATEST:
            found = latest_checkpoint(cfg.work_dir)
            if found is None:
                logger.warning('--resume: no checkpoint in %s yet; starting a new run', cfg.work_dir)
            else:
                logger.info('--resume: continuing from %s', found)
            cfg.load_from = None if found is None else str(found)
        else:
            if not Path(resume).is_file():
                fail(resume, 'checkpoint to resume from not found')
            cfg.load_from = str(resume)
            found = Path(resume)
        cfg.resume = found is not None
        if found is not None:
            no_pretrained = True  # the checkpoint replaces the weights: don't download an initialisation
    if no_pretrained:
        disable_pretrained(cfg)

    if seed is not None:
        cfg.randomness = dict(seed=seed, deterministic=True)
        # cuBLAS needs this for deterministic matrix products on CUDA >= 10.2
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')

    if launcher != 'none' and not torch.cuda.is_available():
        dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
        if dist_cfg.get('backend', 'nccl') == 'nccl':
            logger.info('no CUDA GPU: using the gloo backend for distributed training')
            dist_cfg['backend'] = 'gloo'
        # MMEngine passes device_ids=[LOCAL_RANK] to DistributedDataParallel, which is only valid for GPU modules
        if cfg.get('model_wrapper_cfg') is None:
            cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                         broadcast_buffers=False,
                                         find_unused_parameters=cfg.get('find_unused_parameters', False))

    if no_validate:
        _drop_validation(cfg)
        check_dataset_files(cfg, ('train_dataloader', ))
    else:
        check_dataset_files(cfg, ('train_dataloader', 'val_dataloader'))
        _require_validation_images(cfg)
    return cfg


def _drop_validation(cfg: Config) -> None:
    """No validation loop, and no best checkpoint to keep (there is no metric to rank checkpoints by)."""
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    checkpoint = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint is not None:
        checkpoint.pop('save_best', None)
        checkpoint.pop('rule', None)
        checkpoint.save_last = True


def _require_validation_images(cfg: Config) -> None:
    """A validation file without images (step 2 with a valid ratio of 0) fails in one line, not deep in the
    runner after the first epoch."""
    dataset = (cfg.get('val_dataloader') or {}).get('dataset')
    ann_path = dataset_ann_path(dataset) if isinstance(dataset, dict) else None
    if ann_path is None or not ann_path.is_file():
        return
    from .challenge_io import read_json
    try:
        document = read_json(ann_path)
    except InputError:
        return  # not ours to judge here: MMPose's loader names what is wrong with it
    if isinstance(document, dict) and document.get('images') == []:
        fail(ann_path, 'holds no images to validate on; pass --no-validate to train without validation '
                       '(the last checkpoint is then the model)')


def _init_cpu_process_group(cfg: Config) -> None:
    """Start the process group of a CPU-only torchrun job (gloo) before the runner does.

    MMEngine's ``pytorch`` launcher calls ``torch.cuda.set_device`` before creating the process group, which
    fails on a machine without CUDA; when a group already exists the runner uses it as it is.
    """
    import datetime

    import torch.distributed as dist

    if dist.is_initialized():
        return
    dist_cfg = dict(cfg.env_cfg.get('dist_cfg', {}))
    backend = dist_cfg.pop('backend', 'gloo')
    if isinstance(dist_cfg.get('timeout'), (int, float)):
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    dist.init_process_group(backend=backend, **dist_cfg)


def train(config: str | Path, **kwargs: Any) -> Path:
    """Train as configured (see :func:`build_train_config` for the arguments); return the work dir."""
    from mmengine.runner import Runner

    cfg = build_train_config(config, **kwargs)
    if cfg.launcher == 'pytorch' and not torch.cuda.is_available():
        _init_cpu_process_group(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return Path(cfg.work_dir)


def best_checkpoint(work_dir: str | Path) -> Optional[Path]:
    """The ``best_*.pth`` checkpoint MMEngine kept in ``work_dir`` (``save_best``), if any."""
    found = sorted(Path(work_dir).glob('best_*.pth'), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
