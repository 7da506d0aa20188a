# "seed-baseline": a faithful reproduction of the original CL-Detection 2023 MMPose baseline's settings, the
# reference for benchmarks. Despite its file name ("hrnet-w32 udp") the original built an HRNet-W48 with the
# plain MSRA heatmap codec, padded the box by 1.0 in training but by MMPose's default 1.25 at test time,
# augmented with horizontal flips only, and trained 250 epochs at batch 8 with Adam 5e-4, a 500-iteration
# linear warm-up and LR steps (x0.1) at epochs 170 and 200, validating every 2 epochs.
#
# It takes only the plumbing from our default config (dataset and metric classes, data_root / pretrained /
# num_landmarks switches, per-epoch reseeding for exact --resume) and states every training setting of the
# original here, so that changes to the default never move this reference.
_base_ = './hrnet-w32_udp_512x512.py'

# ImageNet HRNet-W48 weights from OpenMMLab, as the original (set pretrained=None to train offline)
pretrained = 'https://download.openmmlab.com/mmpose/pretrain_models/hrnet_w48-8ef0771d.pth'

train_cfg = dict(max_epochs=250, val_interval=2)
optim_wrapper = dict(optimizer=dict(type='Adam', lr=5e-4))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=500, start_factor=0.001, by_epoch=False),  # warm-up
    dict(type='MultiStepLR', begin=0, end=210, milestones=[170, 200], gamma=0.1, by_epoch=True),
]
default_hooks = dict(checkpoint=dict(interval=2))

codec = dict(type='MSRAHeatmap', input_size=(512, 512), heatmap_size=(128, 128), sigma=2)
model = dict(
    backbone=dict(
        extra=dict(stage2=dict(num_channels=(48, 96)), stage3=dict(num_channels=(48, 96, 192)),
                   stage4=dict(num_channels=(48, 96, 192, 384))),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained) if pretrained else None),
    head=dict(in_channels=48, loss=dict(type='KeypointMSELoss', use_target_weight=True), decoder=codec),
    test_cfg=dict(flip_test=False))

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.0),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackCephalometricInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),  # MMPose's default padding, 1.25
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackCephalometricInputs'),
]
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, dataset=dict(pipeline=val_pipeline))
test_dataloader = dict(batch_size=4, dataset=dict(pipeline=val_pipeline))
