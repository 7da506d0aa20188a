"""Step 1: check that the installed stack works: versions, then one forward pass of the default model.

A broken install fails at step 1's first ``import cldetection`` (one line: run ``make install``); a missing
config here raises ``InputError`` with an actionable one-line message.
"""
from __future__ import annotations

import importlib
import platform
import time
from pathlib import Path
from typing import Optional

from .errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / 'cldetection_configs' / 'cascade_hrnet-s_cpu.py'
#: The packages whose versions step 1 reports.
REPORTED_PACKAGES: tuple[str, ...] = ('torch', 'numpy', 'mmengine', 'mmcv', 'mmpose', 'cldetection')


def collect_versions() -> dict[str, str]:
    """Python, torch (+ CUDA), mmengine, mmcv, mmpose and cldetection versions.

    All of them are already imported by the time this module is (it lives in ``cldetection``, whose import
    pulls in the stack); a broken install is reported where that first import happens, in step 1.
    """
    versions = {'python': platform.python_version()}
    for name in REPORTED_PACKAGES:
        versions[name] = getattr(importlib.import_module(name), '__version__', 'unknown')
    import torch
    versions['cuda'] = (f'{torch.version.cuda} ({torch.cuda.device_count()} GPU(s): '
                        f'{torch.cuda.get_device_name(0)})' if torch.cuda.is_available() else 'not available')
    return versions


def forward_default_model(config: str | Path = DEFAULT_CONFIG, device: Optional[str] = None,
                          input_size: Optional[tuple[int, int]] = None) -> dict:
    """Build the config's model with random weights (no download) and run one forward pass.

    Returns the output heatmap shape, parameter count and forward time; for a cascade also each patch stage's
    output on one image's ``K`` patches (``local_input``, ``local_output``; with a middle stage also
    ``middle_input``, ``middle_output``), included in the time.
    """
    import torch
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from .config_utils import disable_pretrained, load_config

    config = Path(config)
    if not config.is_file():
        raise InputError(config, 'config file not found; run step 1 from the repository root or pass --config')
    cfg = load_config(config)
    disable_pretrained(cfg)  # random init: never download weights here
    init_default_scope(cfg.get('default_scope', 'mmpose'))
    model = MODELS.build(cfg.model).eval()
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model.to(device)
    width, height = input_size or tuple(cfg.codec.input_size)
    inputs = torch.rand(1, 3, height, width, device=device)
    start = time.perf_counter()
    local = {}
    with torch.no_grad():
        out = model(inputs, None, mode='tensor')
        stage = getattr(model, 'local', None)  # a cascade: the local stage on one image's K patches
        if stage is not None:
            patches = torch.rand(model.head.out_channels, 3, stage.patch_size[1], stage.patch_size[0], device=device)
            local = {'local_input': list(patches.shape), 'local_output': list(stage(patches).shape)}
    elapsed = time.perf_counter() - start
    heatmaps = out[0] if isinstance(out, (tuple, list)) else out
    return {'config': str(config), 'device': device, 'input': [1, 3, height, width],
            'output': list(heatmaps.shape), 'parameters': sum(p.numel() for p in model.parameters()),
            'forward_seconds': elapsed, **local}
