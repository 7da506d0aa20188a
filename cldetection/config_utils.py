"""Loading an MMPose config for steps 3 and 4, and applying ``--cfg-options`` so that top-level variables work.

MMEngine substitutes a config's variables when it parses the file: ``data_root`` is copied into every
dataloader's dataset, ``pretrained`` into the backbone's ``init_cfg``, ``num_landmarks`` into the head and the
datasets. A later ``--cfg-options data_root=DIR`` would therefore change only the top-level key and leave the
datasets reading the old folder. :func:`apply_cfg_options` merges the options as MMEngine does and then
re-applies these three variables to every place they feed, so each stays a single switch:

* ``data_root=DIR``: every dataset whose ``data_root`` was the config's ``data_root``;
* ``pretrained=None`` (or a URL / path): the backbone's ImageNet ``init_cfg`` off (or pointing there);
* ``num_landmarks=N``: the heatmap head's ``out_channels`` and every dataset's ``num_landmarks`` (and a hard
  keypoint mining loss's ``topk``, capped at N).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Optional

from mmengine.config import Config, ConfigDict

from .errors import fail, first_line

logger = logging.getLogger(__name__)

#: The dataloaders a config may define, in the order MMEngine's runner builds them.
DATALOADER_KEYS: tuple[str, ...] = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def load_config(config_path: str | Path, cfg_options: Optional[dict[str, Any]] = None) -> Config:
    """Parse ``config_path`` and apply ``cfg_options`` (see module docstring); bad files fail in one line."""
    path = Path(config_path)
    if not path.is_file():
        fail(path, 'config file not found' if not path.exists() else 'config is not a file')
    try:
        cfg = Config.fromfile(str(path))
    except Exception as err:  # syntax errors, missing _base_ files, ...: one line naming the file
        fail(path, f'cannot load the config: {type(err).__name__}: {first_line(err)}')
    if cfg_options:
        apply_cfg_options(cfg, cfg_options)
    return cfg


def apply_cfg_options(cfg: Config, cfg_options: dict[str, Any]) -> Config:
    """Merge ``cfg_options`` into ``cfg`` (in place) and propagate the top-level variables they override."""
    previous_root = cfg.get('data_root')
    cfg.merge_from_dict(cfg_options)
    if 'data_root' in cfg_options:
        set_data_root(cfg, cfg_options['data_root'], previous=previous_root)
    if 'pretrained' in cfg_options:
        set_pretrained(cfg, cfg_options['pretrained'])
    if 'num_landmarks' in cfg_options:
        set_num_landmarks(cfg, int(cfg_options['num_landmarks']))
    return cfg


def iter_dataset_cfgs(cfg: Config, keys: tuple[str, ...] = DATALOADER_KEYS) -> Iterator[ConfigDict]:
    """Every dataset config of the dataloaders ``keys`` (default: all), including those inside wrappers."""
    seen: set[int] = set()

    def walk(dataset: Any) -> Iterator[ConfigDict]:
        if not isinstance(dataset, dict) or id(dataset) in seen:
            return
        seen.add(id(dataset))
        yield dataset
        yield from walk(dataset.get('dataset'))  # RepeatDataset, ClassBalancedDataset, ...
        for inner in dataset.get('datasets') or []:  # CombinedDataset, ConcatDataset
            yield from walk(inner)

    for key in keys:
        loader = cfg.get(key)
        if isinstance(loader, dict):
            yield from walk(loader.get('dataset'))


def set_data_root(cfg: Config, data_root: str | Path, previous: Optional[str] = None) -> int:
    """Point ``cfg.data_root`` and every dataset that used the previous root at ``data_root``.

    Datasets with a different root of their own (e.g. an extra data set in a combined dataset) are left alone.
    Returns the number of datasets changed.
    """
    data_root = str(data_root)
    cfg.data_root = data_root
    changed = 0
    for dataset in iter_dataset_cfgs(cfg):
        if 'data_root' in dataset and (previous is None or dataset['data_root'] == previous):
            dataset['data_root'] = data_root
            changed += 1
    if changed == 0:
        logger.warning('data_root=%s matched no dataloader dataset (they use other roots)', data_root)
    return changed


def _walk_dicts(node: Any, path: str = 'model') -> Iterator[tuple[dict, str]]:
    """Every dict inside ``node`` (itself included), through dicts and lists, with its config path."""
    if isinstance(node, dict):
        yield node, path
        for key, value in node.items():
            yield from _walk_dicts(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _walk_dicts(value, f'{path}[{i}]')


def _walk_init_cfgs(node: Any) -> Iterator[tuple[dict, str]]:
    """The dicts of ``node`` that hold an ``init_cfg``, with the config path of that ``init_cfg``."""
    for owner, path in _walk_dicts(node):
        if 'init_cfg' in owner:
            yield owner, f'{path}.init_cfg'


def _is_pretrained(init_cfg: Any) -> bool:
    if isinstance(init_cfg, dict):
        return init_cfg.get('type') == 'Pretrained'
    if isinstance(init_cfg, (list, tuple)):
        return any(_is_pretrained(c) for c in init_cfg)
    return False


def disable_pretrained(cfg: Config) -> list[str]:
    """Remove every ``Pretrained`` ``init_cfg`` from the model, so building and training download nothing.

    Used whenever the weights come from elsewhere (a checkpoint to test or resume) and by tests and the demo,
    which must run offline. Returns the config paths that were switched off.
    """
    disabled = []
    for owner, path in _walk_init_cfgs(cfg.get('model')):
        init_cfg = owner['init_cfg']
        if not _is_pretrained(init_cfg):
            continue
        if isinstance(init_cfg, (list, tuple)):
            kept = [c for c in init_cfg if not _is_pretrained(c)]
            owner['init_cfg'] = kept or None
        else:
            owner['init_cfg'] = None
        disabled.append(path)
    if 'pretrained' in cfg:
        cfg.pretrained = None
    return disabled


def set_pretrained(cfg: Config, pretrained: Optional[str]) -> None:
    """``None`` / ``''``: no ImageNet initialisation; otherwise the backbone starts from that URL or file."""
    if pretrained in (None, '', 'None', 'none'):
        disable_pretrained(cfg)
        return
    cfg.pretrained = str(pretrained)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(pretrained))


def set_num_landmarks(cfg: Config, num_landmarks: int) -> None:
    """Set the heatmap heads' ``out_channels`` (a cascade's local stage's too) and every dataset's ``num_landmarks``."""
    if num_landmarks < 1:
        fail(None, f'num_landmarks must be >= 1, got {num_landmarks}')
    cfg.num_landmarks = num_landmarks
    cfg.model.head.out_channels = num_landmarks
    if isinstance(cfg.model.get('local'), dict):  # a cascade's local stage
        cfg.model.local.head.out_channels = num_landmarks
    for dataset in iter_dataset_cfgs(cfg):
        if 'num_landmarks' in dataset or dataset.get('type') == 'CephalometricDataset':
            dataset['num_landmarks'] = num_landmarks
    # hard keypoint mining keeps the top k of the N channels; MMPose refuses k > N at the first training step
    for loss, _ in _walk_dicts(cfg.model):
        if loss.get('type') == 'KeypointOHKMMSELoss' and loss.get('topk', 8) > num_landmarks:
            loss['topk'] = num_landmarks


def dataset_ann_path(dataset: dict) -> Optional[Path]:
    """The annotation file a dataset config reads (``data_root / ann_file``), if it names one."""
    ann_file = dataset.get('ann_file')
    if not ann_file:
        return None
    root = dataset.get('data_root') or ''
    return Path(root) / ann_file if root and not Path(ann_file).is_absolute() else Path(ann_file)


def check_dataset_files(cfg: Config, keys: tuple[str, ...] = DATALOADER_KEYS) -> None:
    """Fail in one line, before any model is built, when a dataloader's annotation file is missing."""
    for key in keys:
        loader = cfg.get(key)
        if not isinstance(loader, dict) or not isinstance(loader.get('dataset'), dict):
            continue
        ann_path = dataset_ann_path(loader['dataset'])
        if ann_path is not None and not ann_path.is_file():
            fail(ann_path, f'annotation file of {key} not found; run step2_prepare_coco_dataset.py first or '
                           f'point the config at its output with --cfg-options data_root=DIR')
