"""Checkpoints: reading one safely and telling what is wrong with it in one line, and writing an untrained one.

Read by MMEngine's loader, i.e. ``torch.load`` with ``weights_only=True`` under the allow-list of
:mod:`cldetection.compat`: no code from a checkpoint ever runs. Step 4 (:mod:`cldetection.evaluate`), step 5 and
the grand-challenge container (:mod:`cldetection.predict`) and the ensemble packer (:mod:`cldetection.ensemble`)
share these checks, so a missing file, a file that is not a checkpoint, a truncated one and weights that do not
fit the config's model read the same everywhere.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .cascade import rename_legacy_keys
from .compat import unsafe_checkpoint_global
from .config_utils import disable_pretrained, load_config
from .errors import fail, first_line


def checkpoint_format(checkpoint_file: Path) -> str:
    """``'zip'`` (``torch.save``'s format) or ``'pickle'`` (its legacy one), from the first bytes; a one-line
    error for a missing or unreadable file and for anything else (a text file named ``.pth``)."""
    if not checkpoint_file.is_file():
        fail(checkpoint_file, 'weights file not found' if not checkpoint_file.exists() else 'weights path is not a file')
    try:
        with open(checkpoint_file, 'rb') as f:
            head = f.read(4)
    except OSError as err:
        fail(checkpoint_file, f'cannot read the weights: {err.strerror or first_line(err)}')
    if head.startswith(b'PK\x03\x04'):
        return 'zip'
    if head[:1] == b'\x80':
        return 'pickle'
    fail(checkpoint_file, 'not a checkpoint: ' + ('the file is empty' if not head else
                          f'a PyTorch checkpoint is a zip archive (or a pickle), this file starts with {head!r}'))


def read_checkpoint(checkpoint_file: Path) -> dict:
    """Read a checkpoint through MMEngine (``weights_only`` torch load); one-line errors that tell a missing or
    unreadable file, a file that is not a checkpoint and a truncated or damaged one apart (weights that do not
    fit the model: :func:`check_weights_fit`). Shared by step 4, step 5 and process.py."""
    from mmengine.runner import CheckpointLoader

    kind = checkpoint_format(checkpoint_file)
    try:
        checkpoint = CheckpointLoader.load_checkpoint(str(checkpoint_file), map_location='cpu')
    except Exception as err:
        unsafe = unsafe_checkpoint_global(err)
        if unsafe:
            fail(checkpoint_file, f'checkpoint holds the Python object {unsafe}, which torch will not '
                                  'load safely (weights_only); if the file comes from a trusted MMEngine run, '
                                  'that global belongs in cldetection/compat.py')
        fail(checkpoint_file, f'cannot read the weights: truncated or damaged {kind} checkpoint '
                              f'({type(err).__name__}: {first_line(err)[:160]})')
    if not isinstance(checkpoint, dict):
        fail(checkpoint_file, f'not an MMEngine checkpoint: it holds a {type(checkpoint).__name__}, not a dict')
    return checkpoint


def checkpoint_state_dict(checkpoint: dict, checkpoint_file: Path) -> dict:
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        fail(checkpoint_file, 'no "state_dict" of tensors in the checkpoint')
    # Same default key revision as mmengine.runner.load_checkpoint (weights saved from a DDP wrapper), and the
    # cascade's local stage under its name of earlier versions
    return rename_legacy_keys({re.sub(r'^module\.', '', k): v for k, v in state.items()})


def check_weights_fit(model: torch.nn.Module, state: dict, checkpoint_file: Path, config_file: Path) -> None:
    """Fail in one line unless the weights fit the model exactly (MMEngine would only warn)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
                   if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing (e.g. {missing[0]})')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected (e.g. {unexpected[0]})')
        if wrong_shape:
            parts.append(f'{len(wrong_shape)} of another shape (e.g. {wrong_shape[0]})')
        fail(checkpoint_file, f'weights do not fit the model of {config_file.name}: {", ".join(parts)} '
                              'parameters; was it trained with this config?')


def save_untrained_checkpoint(config_file: str | Path, out_path: str | Path, seed: int = 0) -> Path:
    """Save the config's model with its initial (random) weights as an MMEngine checkpoint.

    For tests and speed benchmarks only -- its predictions are meaningless. No pretrained weights are
    fetched. Written by MMEngine's own ``save_checkpoint`` (as the runner does), with ``meta`` but no
    ``dataset_meta``: the model never saw a dataset, so the predictor takes the landmarks from the config.
    """
    from mmengine.runner.checkpoint import save_checkpoint
    from mmpose.apis import init_model

    cfg = load_config(config_file)
    disable_pretrained(cfg)  # random initial weights: never a download
    torch.manual_seed(seed)
    model = init_model(cfg, checkpoint=None, device='cpu')
    model.init_weights()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint({'meta': {'untrained': True, 'seed': seed}, 'state_dict': model.state_dict()}, str(out_path))
    return out_path
