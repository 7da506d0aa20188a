# Default cephalometric landmark model: HRNet-W32 top-down heatmaps with the UDP codec, 512 x 512 input,
# 128 x 128 heatmaps. Inherits MMPose's stock COCO recipe and states only what differs.
#
# Switches (all work with --cfg-options; step3/step4 re-apply them everywhere they are used):
#   data_root=DIR        step 2's output folder (train.json, valid.json, test.json, images/)
#   pretrained=None      no ImageNet initialisation (needed offline; or a URL / path to another checkpoint)
#   num_landmarks=19     e.g. for ISBI 2015 data (sets the head's out_channels and the datasets)
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_udp-8xb64-210e_coco-256x192.py'
custom_imports = dict(imports=['cldetection'], allow_failed_imports=False)

data_root = 'data/cl2023_coco/'
# ImageNet HRNet-W32 weights from OpenMMLab (downloaded at the start of training)
pretrained = 'https://download.openmmlab.com/mmpose/pretrain_models/hrnet_w32-36af842e.pth'
num_landmarks = 38
# The whole radiograph is the box; 1.1 leaves room for the shift / scale / rotation below without pushing
# landmarks near the border out of the crop. The same padding at test time keeps train and test scales equal.
bbox_padding = 1.1

# ---------------------------------------------------------------------------------------------- schedule
# The original baseline's schedule (250 epochs of ~450 images at batch 8, Adam 5e-4, warm-up, steps at 170/200)
train_cfg = dict(max_epochs=250, val_interval=5)
param_scheduler = [
    dict(type='LinearLR', begin=0, end=500, start_factor=0.001, by_epoch=False),  # warm-up
    dict(type='MultiStepLR', begin=0, end=250, milestones=[170, 200], gamma=0.1, by_epoch=True),
]
auto_scale_lr = dict(base_batch_size=8)  # only used with auto LR scaling; the LR above is for batch 8
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=5, max_keep_ckpts=3, save_best='SDR 2.0mm', rule='greater'))
# Reseeds augmentation every epoch from (seed, epoch): fresh draws each epoch, exact results after --resume.
custom_hooks = [dict(type='SyncBuffersHook'), dict(type='EpochSeedHook')]

# ------------------------------------------------------------------------------------------------- model
codec = dict(type='UDPHeatmap', input_size=(512, 512), heatmap_size=(128, 128), sigma=2)
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained) if pretrained else None),
    head=dict(out_channels=num_landmarks, decoder=codec),
    # a lateral cephalogram is not left/right symmetric: no flip test
    test_cfg=dict(flip_test=False))

# -------------------------------------------------------------------------------------------------- data
dataset_type = 'CephalometricDataset'
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=bbox_padding),
    # X-ray geometry varies little: small shift, +-15 % scale, +-10 degrees; no horizontal flip (faces point
    # the same way in every image), no half-body crops
    dict(type='RandomBBoxTransform', shift_factor=0.05, shift_prob=0.5, scale_factor=(0.85, 1.15),
         scale_prob=1.0, rotate_factor=10.0, rotate_prob=0.5),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    # after the crop: the same result as on the full radiograph for a fraction of the pixels
    dict(type='RandomXRayIntensity', contrast_range=(0.7, 1.3), brightness_delta=25, gamma_range=(0.7, 1.5),
         prob=0.5),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackCephalometricInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=bbox_padding),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='PackCephalometricInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=False,  # see EpochSeedHook
    dataset=dict(type=dataset_type, data_root=data_root, num_landmarks=num_landmarks, ann_file='train.json',
                 data_prefix=dict(img='images/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(type=dataset_type, data_root=data_root, num_landmarks=num_landmarks, ann_file='valid.json',
                 data_prefix=dict(img='images/'), bbox_file=None, pipeline=val_pipeline))
test_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(type=dataset_type, data_root=data_root, num_landmarks=num_landmarks, ann_file='test.json',
                 data_prefix=dict(img='images/'), bbox_file=None, pipeline=val_pipeline))
val_evaluator = dict(_delete_=True, type='CephalometricMetric')
test_evaluator = val_evaluator
