# Tiny coarse-to-fine cascade for the tests (and small synthetic data): the structure of
# cascade_hrnet-s_cpu.py (global heatmaps on the downscaled image, shared local refinement on patches) at a
# fraction of its cost: 128 x 160 global input, 64 x 64 patches at 2 pixels per patch pixel, narrow HRNets.
# Not meant for real radiographs.
_base_ = './cascade_hrnet-s_cpu.py'

max_epochs = 20
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(type='LinearLR', begin=0, end=20, start_factor=0.01, by_epoch=False),
    dict(type='CosineAnnealingLR', begin=0, end=max_epochs, T_max=max_epochs, eta_min=1e-5, by_epoch=True),
]
default_hooks = dict(logger=dict(interval=5))

codec = dict(type='UDPHeatmap', input_size=(128, 160), heatmap_size=(32, 40), sigma=2)
patch_codec = dict(type='UDPHeatmap', input_size=(64, 64), heatmap_size=(16, 16), sigma=2)
width = 8
narrow_hrnet = dict(
    _delete_=True, type='HRNet', in_channels=3, init_cfg=None,
    extra=dict(
        stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(1, ), num_channels=(16, )),
        stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(1, 1), num_channels=(width, 2 * width)),
        stage3=dict(num_modules=1, num_branches=3, block='BASIC', num_blocks=(1, 1, 1),
                    num_channels=(width, 2 * width, 4 * width)),
        stage4=dict(num_modules=1, num_branches=4, block='BASIC', num_blocks=(1, 1, 1, 1),
                    num_channels=(width, 2 * width, 4 * width, 8 * width))))
model = dict(
    backbone=narrow_hrnet,
    head=dict(in_channels=width, decoder=codec),
    local=dict(backbone=narrow_hrnet, head=dict(in_channels=width, decoder=patch_codec),
                patch_size=patch_codec['input_size'], train=dict(patches_per_image=4)),
    # float32 on every CPU, so what the tests see does not depend on the machine's bfloat16 hardware (the
    # default's 'auto'); the tests that want bfloat16 ask for it
    precision='fp32')

# restated: MMEngine resolves the base file's variables when it parses it, so the new codec reaches the pipelines
# only by writing them again
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding={{_base_.bbox_padding}}),
    dict(type='RandomBBoxTransform', shift_factor=0.05, shift_prob=0.5, scale_factor=(0.85, 1.15),
         scale_prob=1.0, rotate_factor=10.0, rotate_prob=0.5),
    dict(type='KeepSourceImage', factor={{_base_.source_factor}}),
    dict(type='AntiAliasTopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='RandomXRayIntensity', prob=0.5),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackCephalometricInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding={{_base_.bbox_padding}}),
    dict(type='KeepSourceImage', factor={{_base_.source_factor}}),
    dict(type='AntiAliasTopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='PackCephalometricInputs'),
]
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = dict(dataset=dict(pipeline=val_pipeline))
