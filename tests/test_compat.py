"""cldetection.compat: the stack's known incompatibilities, handled once and narrowly."""
from __future__ import annotations

import collections
import os
import subprocess
import sys

import numpy as np
import pytest
import torch


def test_mmpose_modules_we_rely_on_import():
    import cldetection  # noqa: F401
    import mmpose.apis  # noqa: F401  (imports models, visualization -> simcc_vis, mmcv.ops users)
    import mmpose.engine  # noqa: F401
    from mmpose.visualization import PoseLocalVisualizer  # noqa: F401


def test_mmcv_ops_stand_in_fails_only_when_used():
    import cldetection  # noqa: F401
    from mmcv.ops import MultiScaleDeformableAttention
    with pytest.raises(ImportError, match='mmcv-lite'):
        MultiScaleDeformableAttention(embed_dims=8)
    with pytest.raises(ImportError):
        from mmcv.ops import nms  # noqa: F401  (optional importers keep their fallback branch)


def test_no_torchvision_and_no_process_wide_switch():
    import cldetection  # noqa: F401
    assert 'torchvision' not in sys.modules
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ


class NotAllowed:
    pass


def test_checkpoint_globals_load_with_weights_only(tmp_path):
    import cldetection  # noqa: F401
    from mmengine.logging.history_buffer import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(np.float64(0.5))
    checkpoint = {'meta': {'epoch': 3, 'seed': np.int64(7), 'hist': np.array([1.0, 2.0]),
                           'skeleton_link_colors': np.zeros((0, 3), np.uint8)},
                  'message_hub': {'log_scalars': {'loss': buffer}},
                  'state_dict': collections.OrderedDict(w=torch.ones(2))}
    torch.save(checkpoint, tmp_path / 'ok.pth')
    loaded = torch.load(tmp_path / 'ok.pth', weights_only=True)
    assert loaded['message_hub']['log_scalars']['loss'].current() == 0.5
    torch.save({'evil': NotAllowed()}, tmp_path / 'bad.pth')
    with pytest.raises(Exception, match='NotAllowed'):  # still weights_only: unknown globals are refused
        torch.load(tmp_path / 'bad.pth', weights_only=True)


def test_compat_is_applied_by_importing_the_package_alone():
    code = ('import cldetection, sys; import mmpose.models; '
            'print(type(sys.modules["mmcv.ops"]).__name__, sys.modules["mmcv.ops"].__doc__)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert 'cldetection.compat stand-in' in out


class _GetattrExploit:
    """Pickles as getattr(HistoryBuffer, '__init__'): the first step of a __globals__ escape."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return getattr, (HistoryBuffer, '__init__')


def test_getattr_is_restricted_to_history_buffer_statistics(tmp_path):
    import cldetection  # noqa: F401
    torch.save({'x': _GetattrExploit()}, tmp_path / 'exploit.pth')
    with pytest.raises(Exception, match='only HistoryBuffer statistics'):
        torch.load(tmp_path / 'exploit.pth', weights_only=True)
