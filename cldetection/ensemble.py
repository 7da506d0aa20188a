"""The mean of several trained models of one architecture, packed as one model: one config, one checkpoint.

Averaging the landmark estimates of two independently trained models is the cheapest accuracy a user can buy
after training (docs/accuracy_log.md: the mean of a teacher and its self-trained student scored 1.657 mm on cl2023
fold 0, against 1.668 for the student alone), at the price of one more inference per model. Packed as an
MMPose model of its own (:class:`LandmarkEnsemble`, registered), the ensemble goes wherever a single model goes
with no code changes: step 4 tests it, step 5 and the grand-challenge container predict with it, step 6 stages
it, because each of them reads one config and one checkpoint.

    python -m cldetection.ensemble --config CONFIG --checkpoints A.pth B.pth [C.pth ...] --out-dir DIR

writes ``DIR/config.py`` (the config with its model wrapped as ``LandmarkEnsemble``, ``_base_`` files resolved)
and ``DIR/ensemble.pth`` (the members' weights under ``members.0.``, ``members.1.``, ...). Every checkpoint must
fit the config's model exactly (the same networks; the training data and schedule may differ, e.g. a teacher
and its student). Nothing in ``DIR`` is replaced without ``--overwrite``.
"""
from __future__ import annotations

import argparse
import copy
import logging
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from mmengine.model import BaseModel
from mmpose.registry import MODELS

from .errors import check_output_file, fail

logger = logging.getLogger(__name__)

ENSEMBLE_CONFIG_NAME = 'config.py'
ENSEMBLE_WEIGHTS_NAME = 'ensemble.pth'
#: per-landmark fields of ``pred_instances`` that are averaged over the members (the rest: the first member's)
AVERAGED_FIELDS = ('keypoints', 'keypoint_scores', 'coarse_keypoints', 'local_scores', 'local_spread')


class LandmarkEnsemble(BaseModel):
    """``num_members`` copies of the model ``member`` whose landmark estimates (image pixels) are averaged.

    Every member sees the same preprocessed input (the members share the config's data preprocessor and test
    pipeline) and predicts as it would alone; the ensemble's ``pred_instances`` are the first member's with
    ``keypoints``, ``keypoint_scores`` and, for cascades, ``coarse_keypoints`` and the local stage's signals replaced
    by the members' means, plus ``member_spread``: each landmark's root-mean-square distance (image pixels) of the
    members' estimates from their mean, a signal of its error (:mod:`cldetection.confidence`).
    Prediction only: the members are trained on their own and combined by :func:`combine_checkpoints`.
    """

    def __init__(self, member: dict, num_members: int, data_preprocessor: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if int(num_members) < 2:
            raise ValueError(f'LandmarkEnsemble needs at least 2 members, got num_members={num_members}')
        member = copy.deepcopy(dict(member))
        if member.get('type') == type(self).__name__:
            raise ValueError('LandmarkEnsemble members cannot be ensembles themselves')
        super().__init__(data_preprocessor=copy.deepcopy(data_preprocessor or member.get('data_preprocessor')),
                         init_cfg=init_cfg)
        # train_cfg / test_cfg are accepted because MMPose's init_model sets model.train_cfg on any config; the
        # members' own test_cfg is what they predict with
        self.members = torch.nn.ModuleList(MODELS.build(copy.deepcopy(member)) for _ in range(int(num_members)))
        self._dataset_meta: Optional[dict] = None

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: Optional[dict]) -> None:
        # MMPose's init_model and MMEngine's runner set the landmark metainfo on the model they built; every
        # member needs it to decode (and the cascade, its landmark count)
        self._dataset_meta = meta
        for member in self.members:
            member.dataset_meta = meta

    def forward(self, inputs: torch.Tensor | list, data_samples: Optional[list] = None, mode: str = 'tensor'):
        if isinstance(inputs, list):
            inputs = torch.stack(inputs)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return [member(inputs, data_samples, mode='tensor') for member in self.members]
        if mode == 'loss':
            raise RuntimeError('LandmarkEnsemble only predicts: train each member with its own config, then '
                               'combine the checkpoints with python -m cldetection.ensemble')
        raise ValueError(f'invalid mode {mode!r}; LandmarkEnsemble supports "predict" and "tensor"')

    def predict(self, inputs: torch.Tensor, data_samples: list) -> list:
        """Each member's prediction of the batch, then their mean in the first member's result samples."""
        per_member = []
        for member in self.members:
            # MMPose's predict writes a new pred_instances into the samples it is given and returns them: keep
            # each member's pred_instances before the next member replaces it
            results = member.predict(inputs, data_samples)
            per_member.append([sample.pred_instances for sample in results])
        for sample, instances in zip(results, zip(*per_member)):
            mean = instances[0].clone()
            for name in AVERAGED_FIELDS:
                if all(name in inst for inst in instances):
                    values = np.mean([np.asarray(inst.get(name), dtype=np.float64) for inst in instances], axis=0)
                    mean.set_field(values.astype(np.float32), name)
            keypoints = np.stack([np.asarray(inst.keypoints, dtype=np.float64) for inst in instances])
            spread = np.sqrt(((keypoints - keypoints.mean(axis=0)) ** 2).sum(axis=-1).mean(axis=0))
            mean.set_field(spread.astype(np.float32), 'member_spread')
            sample.pred_instances = mean
        return results


if __name__ != '__main__':
    # `python -m cldetection.ensemble` runs this file a second time as __main__, after the package's import has
    # registered the class: registering the __main__ copy too would be a duplicate name
    MODELS.register_module(module=LandmarkEnsemble)


# ------------------------------------------------------------------------------------------------ builder
def ensemble_model_cfg(member_cfg: dict, num_members: int) -> dict:
    """The ``model`` dict of an ensemble of ``num_members`` models built from ``member_cfg``."""
    member_cfg = copy.deepcopy(dict(member_cfg))
    return dict(type=LandmarkEnsemble.__name__, member=member_cfg, num_members=int(num_members),
                data_preprocessor=copy.deepcopy(member_cfg.get('data_preprocessor')))


def combine_checkpoints(config_file: str | Path, checkpoint_files: Sequence[str | Path], out_dir: str | Path,
                        overwrite: bool = False) -> tuple[Path, Path]:
    """Write the ensemble of ``checkpoint_files`` (all of ``config_file``'s model) as ``out_dir/config.py`` and
    ``out_dir/ensemble.pth``; check that step 5's predictor loads them; return both paths.

    The checkpoint's ``meta`` keeps the first member's ``dataset_meta`` (landmark names and metainfo) and lists
    the member files it was built from. Both files are written under temporary names and renamed at the end,
    so a failure leaves nothing behind.
    """
    from mmengine.registry import init_default_scope
    from mmengine.runner.checkpoint import save_checkpoint

    from .config_utils import disable_pretrained, load_config
    from .checkpoints import check_weights_fit, checkpoint_state_dict, read_checkpoint
    from .predict import LandmarkPredictor

    config_file = Path(config_file)
    checkpoint_files = [Path(path) for path in checkpoint_files]
    if len(checkpoint_files) < 2:
        fail(None, f'an ensemble needs at least two checkpoints, got {len(checkpoint_files)}')
    duplicates = sorted({str(p) for p in checkpoint_files if checkpoint_files.count(p) > 1})
    if duplicates:
        fail(duplicates[0], 'is given twice; an ensemble of a model with itself only costs time')
    out_dir = Path(out_dir)
    config_out = check_output_file(out_dir / ENSEMBLE_CONFIG_NAME, overwrite)
    weights_out = check_output_file(out_dir / ENSEMBLE_WEIGHTS_NAME, overwrite)

    cfg = load_config(config_file)
    if 'model' not in cfg:
        fail(config_file, 'config has no "model"')
    if cfg.model.get('type') == LandmarkEnsemble.__name__:
        fail(config_file, 'is already an ensemble; give the config of its members')
    disable_pretrained(cfg)
    init_default_scope(cfg.get('default_scope', 'mmpose'))  # as init_model: the data preprocessor is MMPose's
    member_model = MODELS.build(copy.deepcopy(cfg.model))
    states, metas = [], []
    for path in checkpoint_files:
        checkpoint = read_checkpoint(path)
        state = checkpoint_state_dict(checkpoint, path)
        check_weights_fit(member_model, state, path, config_file)
        states.append(state)
        metas.append(checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {})
    del member_model

    cfg.model = ensemble_model_cfg(cfg.model, len(states))
    meta: dict[str, Any] = {'ensemble_of': [str(path) for path in checkpoint_files], 'member_config': str(config_file)}
    if 'dataset_meta' in metas[0]:
        meta['dataset_meta'] = metas[0]['dataset_meta']
    merged = {f'members.{index}.{key}': value for index, state in enumerate(states) for key, value in state.items()}

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='.ensemble.', dir=out_dir) as tmp:
        tmp_config, tmp_weights = Path(tmp) / ENSEMBLE_CONFIG_NAME, Path(tmp) / ENSEMBLE_WEIGHTS_NAME
        cfg.dump(str(tmp_config))
        save_checkpoint({'meta': meta, 'state_dict': merged}, str(tmp_weights))
        LandmarkPredictor(tmp_config, tmp_weights, device='cpu')  # the pair must load on its own, strictly
        tmp_config.replace(config_out)
        tmp_weights.replace(weights_out)
    logger.info('wrote %s and %s: the mean of %d models', config_out, weights_out, len(states))
    return config_out, weights_out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m cldetection.ensemble',
        description='Combine trained checkpoints of one model config into one ensemble model (config.py + '
                    'ensemble.pth) whose landmarks are the mean of the members\' estimates. Step 4, step 5 and '
                    'the grand-challenge container use the pair like any single model (inference costs one pass '
                    'per member).')
    parser.add_argument('--config', type=Path, required=True,
                        help='the MMPose config the checkpoints were trained with (their networks must be its model)')
    parser.add_argument('--checkpoints', type=Path, nargs='+', required=True,
                        help='two or more checkpoints (.pth) from step 3, e.g. two seeds, or a teacher and its student')
    parser.add_argument('--out-dir', type=Path, required=True,
                        help=f'folder to write {ENSEMBLE_CONFIG_NAME} and {ENSEMBLE_WEIGHTS_NAME} into')
    parser.add_argument('--overwrite', action='store_true', help='replace those two files if they exist')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .errors import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging()
    config_out, weights_out = combine_checkpoints(args.config, args.checkpoints, args.out_dir, args.overwrite)
    print(f'wrote {config_out} and {weights_out}: the mean of {len(args.checkpoints)} models; predict with\n'
          f'  python step5_predict_expected_output.py --config_file {config_out} --load_weight_path {weights_out} ...')
    return 0


if __name__ == '__main__':
    from .errors import run_cli

    run_cli(main)
