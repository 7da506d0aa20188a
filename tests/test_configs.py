"""Every config in cldetection_configs/ parses, builds its model without pretrained weights and runs on CPU."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from test_train import one_torch_thread  # noqa: F401

from cldetection.config_utils import disable_pretrained, iter_dataset_cfgs, load_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'cldetection_configs'
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob('*.py'))
pytestmark = pytest.mark.usefixtures('one_torch_thread')
EXPECTED = {'hrnet-w32_udp_512x512.py', 'hrnet-w32_udp_awing_512x512.py',
            'seed-baseline_hrnet-w48_msra_512x512.py', 'tiny_cpu.py', 'cascade_hrnet-s_cpu.py',
            'tiny_cascade_cpu.py'}
#: configs that keep the checkpoint with the lowest validation MRE (the rest: the highest SDR 2 mm)
BEST_BY_MRE = {'tiny_cpu.py', 'cascade_hrnet-s_cpu.py', 'tiny_cascade_cpu.py'}


def test_expected_configs_exist() -> None:
    assert EXPECTED <= set(CONFIGS)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_and_runs_forward_on_cpu(name: str) -> None:
    from mmpose.registry import MODELS
    from mmpose.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    cfg = load_config(CONFIG_DIR / name, {'data_root': '/nonexistent/data', 'pretrained': None})
    assert cfg.custom_imports['imports'] == ['cldetection']  # registers dataset, metric, transforms, hook
    assert cfg.val_evaluator['type'] == 'CephalometricMetric'
    best = (cfg.default_hooks.checkpoint.save_best, cfg.default_hooks.checkpoint.rule)
    assert best == (('MRE', 'less') if name in BEST_BY_MRE else ('SDR 2.0mm', 'greater'))
    # data_root reaches every dataloader although MMEngine substituted the variable at parse time
    datasets = list(iter_dataset_cfgs(cfg))
    assert len(datasets) == 3 and all(d['data_root'] == '/nonexistent/data' for d in datasets)
    assert all(d['type'] == 'CephalometricDataset' for d in datasets)
    for d in datasets:
        assert [t['type'] for t in d['pipeline']][-1] == 'PackCephalometricInputs'
    assert disable_pretrained(cfg) == []  # pretrained=None already switched every download off

    model = MODELS.build(cfg.model)
    tiny = 'tiny' in name
    if tiny:  # the big models' random initialisation alone takes seconds; building them is the check
        model.init_weights()
    model.eval()
    size = 256 if tiny else 128  # big configs: a small input keeps the test quick
    with torch.no_grad():  # (a cascade's global stage)
        heatmaps = model(torch.rand(1, 3, size, size), None, mode='tensor')
    assert heatmaps.shape == (1, 38, size // 4, size // 4)
    assert torch.isfinite(heatmaps).all()


def test_default_config_matches_the_issue() -> None:
    cfg = load_config(CONFIG_DIR / 'hrnet-w32_udp_512x512.py')
    assert cfg.model.backbone.extra.stage4.num_channels == (32, 64, 128, 256)  # HRNet-W32
    assert cfg.model.head.decoder == dict(type='UDPHeatmap', input_size=(512, 512), heatmap_size=(128, 128), sigma=2)
    assert cfg.model.test_cfg.flip_test is False
    train, test = cfg.train_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline
    padding = {t['padding'] for t in train + test if t['type'] == 'GetBBoxCenterScale'}
    assert len(padding) == 1  # the same box padding in training and testing
    types = [t['type'] for t in train]
    assert 'RandomFlip' not in types and 'RandomXRayIntensity' in types and 'RandomBBoxTransform' in types
    # ImageNet weights are named but switchable off
    assert cfg.model.backbone.init_cfg['type'] == 'Pretrained'
    off = load_config(CONFIG_DIR / 'hrnet-w32_udp_512x512.py', {'pretrained': None})
    assert off.model.backbone.init_cfg is None
    off = load_config(CONFIG_DIR / 'hrnet-w32_udp_512x512.py', {'model.backbone.init_cfg': None})
    assert off.model.backbone.init_cfg is None


def test_seed_baseline_reproduces_the_original_settings() -> None:
    cfg = load_config(CONFIG_DIR / 'seed-baseline_hrnet-w48_msra_512x512.py')
    assert cfg.model.backbone.extra.stage4.num_channels == (48, 96, 192, 384)  # HRNet-W48
    assert cfg.model.head.in_channels == 48 and 'hrnet_w48' in cfg.model.backbone.init_cfg['checkpoint']
    assert cfg.model.head.decoder == dict(type='MSRAHeatmap', input_size=(512, 512), heatmap_size=(128, 128), sigma=2)
    train, test = cfg.train_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline
    assert [t.get('padding', 1.25) for t in train if t['type'] == 'GetBBoxCenterScale'] == [1.0]
    assert [t.get('padding', 1.25) for t in test if t['type'] == 'GetBBoxCenterScale'] == [1.25]
    assert [t['type'] for t in train if t['type'].startswith('Random')] == ['RandomFlip']
    assert (cfg.optim_wrapper.optimizer['type'], cfg.optim_wrapper.optimizer['lr']) == ('Adam', 5e-4)
    warmup, steps = cfg.param_scheduler
    assert (warmup['type'], warmup['end'], warmup['by_epoch']) == ('LinearLR', 500, False)
    assert (steps['type'], steps['milestones']) == ('MultiStepLR', [170, 200])
    assert cfg.train_cfg.max_epochs == 250 and cfg.train_dataloader.batch_size == 8


def test_awing_variant_uses_adaptive_wing_loss() -> None:
    cfg = load_config(CONFIG_DIR / 'hrnet-w32_udp_awing_512x512.py')
    assert cfg.model.head.loss['type'] == 'AdaptiveWingLoss'


def test_num_landmarks_option_reaches_head_and_datasets() -> None:
    cfg = load_config(CONFIG_DIR / 'tiny_cpu.py', {'num_landmarks': 19})
    assert cfg.model.head.out_channels == 19
    assert {d['num_landmarks'] for d in iter_dataset_cfgs(cfg)} == {19}


def test_num_landmarks_option_reaches_both_cascade_heads() -> None:
    cfg = load_config(CONFIG_DIR / 'cascade_hrnet-s_cpu.py', {'num_landmarks': 19})
    assert cfg.model.head.out_channels == cfg.model.local.head.out_channels == 19
    assert {d['num_landmarks'] for d in iter_dataset_cfgs(cfg)} == {19}


def test_num_landmarks_option_caps_hard_keypoint_mining() -> None:
    """The cascade's global loss mines the 8 hardest channels; with fewer landmarks it mines all of them, and the
    model trains (MMPose raises on topk > channels at the first step)."""
    def ohkm_topk(cfg) -> list[int]:
        return [loss['topk'] for loss in cfg.model.head.loss['losses'] if loss['type'] == 'KeypointOHKMMSELoss']

    assert ohkm_topk(load_config(CONFIG_DIR / 'cascade_hrnet-s_cpu.py', {'num_landmarks': 19})) == [8]
    cfg = load_config(CONFIG_DIR / 'cascade_hrnet-s_cpu.py', {'num_landmarks': 5})
    assert ohkm_topk(cfg) == [5]

    import torch
    from mmpose.registry import MODELS
    loss = MODELS.build(cfg.model.head.loss)
    assert torch.isfinite(loss(torch.rand(2, 5, 8, 8), torch.rand(2, 5, 8, 8), torch.ones(2, 5)))


def test_cascade_config_keeps_the_source_image_in_every_pipeline() -> None:
    cfg = load_config(CONFIG_DIR / 'cascade_hrnet-s_cpu.py')
    for dataset in iter_dataset_cfgs(cfg):
        types = [t['type'] for t in dataset['pipeline']]
        assert types.index('KeepSourceImage') < types.index('AntiAliasTopdownAffine')
    factor = next(t['factor'] for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'KeepSourceImage')
    assert cfg.model.local.pixel_scale % factor == 0  # patches are cut from the reduced copy
    assert cfg.model.local.head.decoder['input_size'] == cfg.model.local.patch_size
