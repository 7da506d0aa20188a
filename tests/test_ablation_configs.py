"""The ablation configs of issue #9 (benchmarks/ablations/) build, and each stage's output matches its codec.

A mismatch (e.g. a head that upsamples to 64 x 64 with a codec still at 32 x 32) would otherwise surface only
minutes into a benchmark run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from test_train import one_torch_thread  # noqa: F401

from cldetection.config_utils import iter_dataset_cfgs, load_config

ABLATION_DIR = Path(__file__).resolve().parents[1] / 'benchmarks' / 'ablations'
ABLATIONS = sorted(p.name for p in ABLATION_DIR.glob('*.py'))
pytestmark = pytest.mark.usefixtures('one_torch_thread')


def test_ablations_exist() -> None:
    assert {'cascade_local-hm64.py', 'cascade_global-320x384.py', 'cascade_local-dark.py',
            'cascade_local-0.15mm.py', 'cascade_global-ohkm.py', 'cascade_global-sigma4.py',
            'cascade_local-jitter5mm.py', 'cascade_global-shape.py', 'cascade_flip.py', 'cascade_global-w16.py',
            'cascade_local-w16.py', 'cascade_global-hm128.py'} <= set(ABLATIONS)


@pytest.mark.parametrize('name', ABLATIONS)
def test_ablation_builds_and_both_stages_match_their_codecs(name: str) -> None:
    from mmpose.registry import MODELS
    from mmpose.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    cfg = load_config(ABLATION_DIR / name, {'data_root': '/nonexistent/data'})
    # the product, and research modules only from the ablations' own folder
    assert cfg.custom_imports['imports'][0] == 'cldetection'
    assert all(m.startswith('benchmarks.ablations.modules.') for m in cfg.custom_imports['imports'][1:])
    factors = {t['factor'] for d in iter_dataset_cfgs(cfg) for t in d['pipeline'] if t['type'] == 'KeepSourceImage'}
    assert len(factors) == 1  # training and testing cut patches from the same source
    input_sizes = {tuple(t['input_size']) for d in iter_dataset_cfgs(cfg) for t in d['pipeline']
                   if t['type'] == 'AntiAliasTopdownAffine'}
    assert input_sizes == {tuple(cfg.model.head.decoder['input_size'])}
    # the training targets are made with the codec the head decodes with (a stale pipeline would not be)
    encoders = [{k: v for k, v in t['encoder'].items() if k != '_scope_'}
                for t in cfg.train_dataloader.dataset.pipeline if t['type'] == 'GenerateTarget']
    assert encoders == [{k: v for k, v in cfg.model.head.decoder.items() if k != '_scope_'}]

    model = MODELS.build(cfg.model).eval()
    width, height = cfg.model.head.decoder['input_size']
    with torch.no_grad():
        heatmaps = model(torch.rand(1, 3, height, width), None, mode='tensor')
    assert heatmaps.shape[2:] == tuple(reversed(cfg.model.head.decoder['heatmap_size']))
    stage = model.local
    patch = np.random.default_rng(0).integers(0, 255, (2, 1, *stage.patch_size), dtype=np.uint8)
    with torch.no_grad():
        local = stage(stage.normalise(patch))
    assert local.shape == (2, 38, *reversed(stage.head.decoder.heatmap_size))

    factor = factors.pop()
    source = np.random.default_rng(1).integers(0, 255, (2400 // factor, 1935 // factor), dtype=np.uint8)
    points = np.array([[900.0, 1200.0]] * 38)
    refined, scores, _ = stage.refine(points, source, factor)
    assert refined.shape == (38, 2) and np.isfinite(refined).all() and scores.shape == (38, )
