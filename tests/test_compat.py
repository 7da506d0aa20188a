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


# ------------------------------------------------------------------------------ xtcocotools stand-in
def _run(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (pytest's own warning filters and imports stay out of it)."""
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)


def test_absent_xtcocotools_is_served_from_pycocotools():
    # sys.modules[name] = None is how Python marks a module as not importable: xtcocotools "absent" on any Python
    result = _run('import sys; sys.modules["xtcocotools"] = None\n'
                  'import cldetection, pycocotools.coco, pycocotools.mask\n'
                  'from xtcocotools.coco import COCO\n'
                  'import xtcocotools.mask\n'
                  'from xtcocotools.cocoeval import COCOeval\n'
                  'assert COCO is pycocotools.coco.COCO and xtcocotools.mask is pycocotools.mask\n'
                  'import mmpose.datasets, mmpose.evaluation  # their module-level xtcocotools imports\n'
                  'try:\n'
                  '    COCOeval(None, None, "keypoints")\n'
                  'except ImportError as err:\n'
                  '    print("refused:", err)\n')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'refused: xtcocotools.cocoeval.COCOeval' in result.stdout


def test_installed_xtcocotools_is_kept():
    result = _run('import importlib.util\n'
                  'real = importlib.util.find_spec("xtcocotools") is not None\n'
                  'import cldetection, xtcocotools\n'
                  'print(real, "stand-in" in (xtcocotools.__doc__ or ""))\n')
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() in (['True', 'False'], ['False', 'True'])  # real one kept, or stand-in when absent


def test_pycocotools_reads_our_annotation_files_like_xtcocotools(small_stack, tmp_path):
    """What the stand-in relies on: both COCO loaders index step 2's files identically (3.11, where both exist)."""
    xtcoco = pytest.importorskip('xtcocotools.coco', reason='xtcocotools is not installed on this Python')
    if 'stand-in' in (sys.modules['xtcocotools'].__doc__ or ''):
        pytest.skip('xtcocotools is the stand-in here')
    from pycocotools.coco import COCO

    from cldetection.prepare import prepare_coco_dataset
    stack, gt = small_stack
    prepare_coco_dataset(stack, gt, tmp_path / 'coco', ratios=(0.5, 0.25, 0.25), seed=0, progress=False)
    ann = str(tmp_path / 'coco' / 'train.json')
    ours, theirs = COCO(ann), xtcoco.COCO(ann)
    assert ours.getImgIds() == theirs.getImgIds() and ours.getCatIds() == theirs.getCatIds()
    assert ours.loadCats(ours.getCatIds()) == theirs.loadCats(theirs.getCatIds())
    for img_id in ours.getImgIds():
        assert ours.loadImgs(img_id) == theirs.loadImgs(img_id)
        assert ours.loadAnns(ours.getAnnIds(imgIds=img_id)) == theirs.loadAnns(theirs.getAnnIds(imgIds=img_id))


# ------------------------------------------------------------------------------------------ warnings
def test_known_upstream_warnings_are_filtered_by_message_and_module():
    result = _run('import warnings, cldetection\n'
                  'PKG = "pkg_resources is deprecated as an API. See https://setuptools.pypa.io/"\n'
                  'MSDA = ("Fail to import ``MultiScaleDeformableAttention`` from ``mmcv.ops.multi_scale_deform_attn``, '
                  'You should install ``mmcv`` rather than ``mmcv-lite`` if you need this module. ")\n'
                  'cases = [(PKG, "mmengine.utils.package_utils"), (PKG, "importlib"),\n'
                  '         (MSDA, "mmcv.cnn.bricks.transformer"),\n'
                  '         (PKG, "somebody.else"), (MSDA, "mmcv.cnn.bricks.transformer_v2"),\n'
                  '         ("another warning", "mmcv.cnn.bricks.transformer")]\n'
                  'for i, (message, module) in enumerate(cases):\n'
                  '    with warnings.catch_warnings(record=True) as caught:\n'
                  '        warnings.warn_explicit(message, UserWarning, "x.py", i + 1, module=module)\n'
                  '    print(len(caught), module)\n')
    assert result.returncode == 0, result.stderr
    shown = [line.split()[0] for line in result.stdout.splitlines()]
    assert shown == ['0', '0', '0', '1', '1', '1']  # the known three silenced; same text elsewhere still shows


def test_importing_the_stack_prints_no_warning():
    result = _run('import cldetection, mmpose.apis, mmpose.engine, mmdet, mmengine.runner\n'
                  'from mmengine.utils import is_installed; is_installed("numpy")  # imports pkg_resources\n'
                  'from mmcv.cnn.bricks import transformer  # tries the compiled op\n')
    assert result.returncode == 0 and result.stderr == '', result.stderr[-2000:]
