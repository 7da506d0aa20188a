"""Workarounds for the known incompatibilities of our pinned stack, in one place.

Applied once, by ``import cldetection`` (see ``cldetection/__init__.py``); nothing else in the project patches
anything. Each fix is a no-op where the problem it works around does not exist, so the module is safe to keep
when the pins move. Targets (see requirements.lock): torch 2.13.0, mmengine 0.10.7, mmcv-lite 2.1.0,
mmpose 1.3.2, no torchvision; Python 3.11 to 3.13.

1. ``mmcv.ops`` is missing from mmcv-lite (it has no compiled ``mmcv._ext``). MMPose 1.3.2 imports
   ``MultiScaleDeformableAttention`` from it at module level in its EDPose / RTMO transformer heads, which
   ``mmpose.models`` imports eagerly although no cldetection model uses them. We register a stand-in
   ``mmcv.ops`` that offers that one name as a class which raises on construction; any other name raises
   ``ImportError`` exactly as a missing op would, so the optional imports in MMEngine
   (``SyncBatchNorm``, ``DeformConv2d``) keep taking their "not available" branch.
2. torchvision is not installed (its PyPI build pulls CUDA and breaks MMEngine's environment collection).
   MMPose 1.3.2 imports it only in ``mmpose/visualization/simcc_vis.py`` (a SimCC heatmap debug drawer we do
   not use), which ``PoseLocalVisualizer`` imports eagerly. We pre-register that one module with a stand-in
   ``SimCCVisualizer`` that raises if used. We do not fake torchvision itself.
3. torch >= 2.6 loads checkpoints with ``weights_only=True``. MMEngine 0.10.7 calls ``torch.load`` without the
   argument, and its checkpoints carry a few non-tensor globals (the message hub's ``HistoryBuffer``, numpy
   scalars and arrays in the log buffers). We add exactly those to torch's safe-globals allow-list, so
   loading stays ``weights_only=True`` (no arbitrary code runs from a checkpoint) and resuming works. We do
   not set the process-wide ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` switch. ``HistoryBuffer.__getstate__``
   pickles its statistics methods as ``getattr(HistoryBuffer, 'min')``; allowing the real ``getattr`` would
   reopen arbitrary code execution (``getattr(f, '__globals__')`` ...), so ``builtins.getattr`` is mapped to
   :func:`_history_buffer_getattr`, which resolves only those registered methods and refuses anything else.
   Likewise an empty numpy array (e.g. the metainfo's empty skeleton colours in ``meta.dataset_meta``) pickles
   its data as ``bytes()``; ``builtins.bytes`` is mapped to :func:`_empty_bytes`, which builds only that.
4. xtcocotools (MMPose's fork of pycocotools) publishes no wheels for Python >= 3.12, so the lock installs it
   on 3.11 only. MMPose imports it at module level in its COCO-style datasets (``xtcocotools.coco.COCO``, the
   only part our datasets use: it loads our annotation files, which pycocotools' ``COCO`` reads the same way),
   its bottom-up transforms (``xtcocotools.mask``, the same C API as ``pycocotools.mask``) and its COCO
   keypoint metrics (``xtcocotools.cocoeval.COCOeval``, which adds OKS sigmas that pycocotools lacks; we use
   our own metric). When xtcocotools is absent, we register a stand-in ``xtcocotools`` package whose ``coco``
   and ``mask`` are pycocotools' and whose ``COCOeval`` raises on construction. An installed xtcocotools is
   never replaced.
5. Known-harmless upstream warnings would otherwise open every command's output: setuptools' "pkg_resources is
   deprecated" (twice: MMEngine's ``is_installed`` imports and then reloads ``pkg_resources``) and mmcv-lite's
   "Fail to import ``MultiScaleDeformableAttention``" (its compiled op; see 1). Each is ignored by its message,
   category and the module that issues it (:data:`KNOWN_HARMLESS_WARNINGS`); every other warning still shows.
"""
from __future__ import annotations

import importlib.util
import re
import sys
import types
import warnings
from typing import Any, Optional

_APPLIED = False

#: ``(message regex, category, module regex)`` of each upstream warning we silence (fix 5). The module is the
#: one ``warnings`` attributes the warning to; both regexes must match from the start, the module's whole name.
KNOWN_HARMLESS_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # setuptools >= 67 on ``import pkg_resources`` (MMEngine's package_utils), and again on its reload
    (r'pkg_resources is deprecated as an API', UserWarning, r'(mmengine\.utils\.package_utils|importlib)\Z'),
    # mmcv-lite: mmcv.cnn.bricks.transformer tries the compiled op at import time
    (r'Fail to import ``MultiScaleDeformableAttention`` from ``mmcv\.ops', UserWarning,
     r'mmcv\.cnn\.bricks\.transformer\Z'),
)


class _UnavailableOp:
    """Stand-in for a compiled mmcv op: importable, but fails loudly when used."""

    _name = 'mmcv op'

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ImportError(f'{self._name} needs the full mmcv build with compiled ops (mmcv._ext); '
                          'cldetection installs mmcv-lite, which has none.')


def _install_mmcv_ops_stub() -> bool:
    """Register a stand-in ``mmcv.ops`` when mmcv-lite (no ``mmcv._ext``) is installed."""
    if 'mmcv.ops' in sys.modules or importlib.util.find_spec('mmcv') is None:
        return False
    if importlib.util.find_spec('mmcv._ext') is not None:  # full mmcv: the real ops import fine
        return False
    stub = types.ModuleType('mmcv.ops')
    stub.__doc__ = 'cldetection.compat stand-in: mmcv-lite ships no compiled ops.'
    stub.MultiScaleDeformableAttention = type(
        'MultiScaleDeformableAttention', (_UnavailableOp,), {'_name': 'MultiScaleDeformableAttention'})

    def __getattr__(name: str) -> Any:  # any other op: behave like a missing name -> ImportError
        raise AttributeError(f'mmcv.ops.{name} is unavailable in mmcv-lite')

    stub.__getattr__ = __getattr__  # type: ignore[attr-defined]
    import mmcv
    sys.modules['mmcv.ops'] = stub
    mmcv.ops = stub  # type: ignore[attr-defined]
    return True


def _install_simcc_vis_stub() -> bool:
    """Pre-register ``mmpose.visualization.simcc_vis`` when torchvision is absent."""
    name = 'mmpose.visualization.simcc_vis'
    if name in sys.modules or importlib.util.find_spec('torchvision') is not None:
        return False
    stub = types.ModuleType(name)
    stub.SimCCVisualizer = type('SimCCVisualizer', (_UnavailableOp,), {  # type: ignore[attr-defined]
        '_name': 'SimCCVisualizer (needs torchvision)'})
    sys.modules[name] = stub
    return True


class _UnavailableCOCOeval(_UnavailableOp):
    _name = ('xtcocotools.cocoeval.COCOeval (keypoint OKS evaluation; xtcocotools is not installed, and '
             'cldetection.compat serves only its COCO loader and mask API from pycocotools)')


def _install_xtcocotools_stand_in() -> bool:
    """Register ``xtcocotools`` backed by pycocotools when xtcocotools is absent (no wheels for Python >= 3.12).

    ``sys.modules['xtcocotools'] = None`` (Python's mark for "not importable") counts as absent.
    """
    if sys.modules.get('xtcocotools') is not None or importlib.util.find_spec('xtcocotools') is not None:
        return False
    if importlib.util.find_spec('pycocotools') is None:  # nothing to serve it from: imports fail as before
        return False
    import pycocotools.coco
    import pycocotools.mask

    package = types.ModuleType('xtcocotools')
    package.__doc__ = 'cldetection.compat stand-in: xtcocotools served from pycocotools.'
    package.__path__ = []  # a package: ``import xtcocotools.coco`` finds the submodules in sys.modules
    coco = types.ModuleType('xtcocotools.coco')
    coco.__doc__ = 'cldetection.compat stand-in: pycocotools.coco.COCO.'
    coco.COCO = pycocotools.coco.COCO  # type: ignore[attr-defined]
    cocoeval = types.ModuleType('xtcocotools.cocoeval')
    cocoeval.__doc__ = 'cldetection.compat stand-in: COCOeval needs the real xtcocotools.'
    cocoeval.COCOeval = _UnavailableCOCOeval  # type: ignore[attr-defined]
    package.coco, package.cocoeval, package.mask = coco, cocoeval, pycocotools.mask  # type: ignore[attr-defined]
    sys.modules.update({'xtcocotools': package, 'xtcocotools.coco': coco, 'xtcocotools.cocoeval': cocoeval,
                        'xtcocotools.mask': pycocotools.mask})
    return True


def _filter_known_warnings() -> None:
    """Ignore exactly the warnings in :data:`KNOWN_HARMLESS_WARNINGS` (fix 5)."""
    for message, category, module in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category, module=module)


def checkpoint_safe_globals() -> list:
    """The non-tensor globals that MMEngine 0.10.7 checkpoints written by our runs contain."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed: list = [HistoryBuffer, np.ndarray, np.dtype, np.core.multiarray._reconstruct,
                     np.core.multiarray.scalar]
    # numpy >= 1.25 pickles dtypes as instances of their per-type classes (np.dtypes.Float64DType, ...).
    dtypes_mod = getattr(np, 'dtypes', None)
    if dtypes_mod is not None:
        allowed += [getattr(dtypes_mod, n) for n in dir(dtypes_mod) if n.endswith('DType')]
    return allowed


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as seen by the weights-only unpickler: HistoryBuffer's statistics methods only."""
    import pickle

    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in set(HistoryBuffer._statistics_methods) | {'min', 'max', 'current', 'mean'}:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'checkpoint asks for getattr({obj!r}, {name!r}); only HistoryBuffer statistics '
                                 'methods are allowed (cldetection.compat)')


def _empty_bytes(*args: Any) -> bytes:
    """``bytes`` as seen by the weights-only unpickler: only ``bytes()`` (an empty array's data)."""
    if args:
        import pickle
        raise pickle.UnpicklingError(f'checkpoint asks for bytes{args!r}; only bytes() is allowed '
                                     '(cldetection.compat)')
    return b''


def _allow_checkpoint_globals() -> bool:
    import torch
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:  # torch < 2.4 has no weights_only default to satisfy
        return False
    add_safe_globals(checkpoint_safe_globals())
    add_safe_globals([(_history_buffer_getattr, 'builtins.getattr'), (_empty_bytes, 'builtins.bytes')])
    return True


def unsafe_checkpoint_global(err: BaseException) -> Optional[str]:
    """The global a weights-only ``torch.load`` refused (``'module.Name'``), if that is what ``err`` is."""
    found = re.search(r'Unsupported global: GLOBAL ([\w.]+)', str(err))
    return found.group(1) if found else None


def apply() -> None:
    """Apply every workaround once (idempotent). Must run before ``mmpose`` is imported."""
    global _APPLIED
    if _APPLIED:
        return
    _filter_known_warnings()
    _install_mmcv_ops_stub()
    _install_simcc_vis_stub()
    _install_xtcocotools_stand_in()
    _allow_checkpoint_globals()
    _APPLIED = True
