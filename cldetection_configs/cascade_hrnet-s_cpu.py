# Coarse-to-fine cascade sized for a CPU (cldetection.cascade.CascadeLandmarkEstimator), trained from scratch.
#
# Global stage: the whole radiograph, area-downscaled to 256 x 320 (w x h, the radiographs' aspect ratio), a
# small HRNet, UDP heatmaps at 64 x 80. Local stage: one shared small HRNet refines every landmark on a
# 128 x 128 patch at 2 radiograph pixels per patch pixel (25.6 mm at 0.1 mm/px), centred on the global
# estimate, UDP heatmaps at 32 x 32 for all landmarks, the patch's own landmark read from its channel.
# Both stages train together in one model; one checkpoint holds both.
#
# Switches as in every config here: data_root=DIR, num_landmarks=N (19 for ISBI 2015), pretrained (unused:
# both networks train from scratch).
_base_ = './hrnet-w32_udp_512x512.py'

pretrained = None
num_landmarks = 38
bbox_padding = 1.1

# ---------------------------------------------------------------------------------------------- schedule
# 40 epochs: as accurate as the earlier 120 on both protocols measured (ISBI 2015 senior 1.491 mm against 1.538;
# cl2023 fold 0 1.768 against 1.786: their Runs rows in benchmarks/RESULTS.md) at a third of the time: 27 min of
# training for ISBI's 135 images on 2 idle AMD EPYC cores. Longer training overfits the local stage (its error with
# patches centred on the truth: 1.200 mm after 40 epochs, 1.339 after 120, the "floor" columns of RESULTS.md's
# cascade-ablation tables; docs/accuracy_log.md). Scale the epochs with your number of images.
max_epochs = 40
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
# AdamW with decoupled weight decay 2.0 on the convolution and head weights (not on batch norms or biases, as in
# RTMPose's recipe). With ~154 training images both stages overfit; the decay bought 0.041 mm on both cl2023 folds
# (means of two seeds: 1.712 -> 1.671 mm on fold 0, 1.824 -> 1.783 on fold 1) and more points within 2 mm, at no
# cost in time; decay 0.5 and 1.0 bought less, 3.0 and 4.0 nothing more (benchmarks/RESULTS.md, the generated
# "What each technique bought"; ablations cascade_adam: Adam without decay, the default until 2026-12-06;
# cascade_adamw, cascade_adamw-wd1 to -wd4; docs/accuracy_log.md).
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=2.0),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=17, start_factor=0.01, by_epoch=False),  # warm-up (iterations)
    dict(type='CosineAnnealingLR', begin=0, end=max_epochs, T_max=max_epochs, eta_min=1e-5, by_epoch=True),
]
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=5, max_keep_ckpts=1, save_best='MRE', rule='less'))


# ------------------------------------------------------------------------------------------------- model
def small_hrnet(width):
    """HRNet with one module per stage and branch widths width, 2x, 4x, 8x (stride-4 output)."""
    return dict(
        type='HRNet', in_channels=3, init_cfg=None,
        extra=dict(
            stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(2, ), num_channels=(32, )),
            stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(2, 2),
                        num_channels=(width, 2 * width)),
            stage3=dict(num_modules=1, num_branches=3, block='BASIC', num_blocks=(2, 2, 2),
                        num_channels=(width, 2 * width, 4 * width)),
            stage4=dict(num_modules=1, num_branches=4, block='BASIC', num_blocks=(2, 2, 2, 2),
                        num_channels=(width, 2 * width, 4 * width, 8 * width))))


# Global stage branch widths 32/64/128/256, local stage 24/48/96/192. The wider global stage (16 until 2026-11-30)
# finds the 38 cl2023 landmarks better, and the cascade with it: cl2023 fold 0 1.724 mm against 1.756-1.768,
# fold 1 1.865 against 1.932; ISBI 2015 senior 1.489 against 1.491-1.505 (19 landmarks: no gain, no loss); it
# costs ~20 % more training time (Runs rows in benchmarks/RESULTS.md; docs/accuracy_log.md, "The wider global
# stage becomes the default"). The wider local stage (16 until 2026-12-01; ablation cascade_local-w16) gained on
# both cl2023 folds (1.724 -> 1.690 mm on fold 0, 1.865 -> 1.833 on fold 1: RESULTS.md, "What each technique
# bought") for ~10 % more training time and prediction time (docs/accuracy_log.md).
global_width = 32
local_width = 24
# sigma 3, not 2: from scratch with sigma 2, the MSE left 2-3 of 38 landmarks' heatmaps flat (cl2023 folds 0
# and 1 after 40 epochs: errors of 26-543 mm on landmarks 10, 28, 36); sigma 3 learned all 38 in 20 epochs
codec = dict(type='UDPHeatmap', input_size=(256, 320), heatmap_size=(64, 80), sigma=3)
patch_codec = dict(type='UDPHeatmap', input_size=(128, 128), heatmap_size=(32, 32), sigma=2)
source_factor = 2  # the local stage's source: the radiograph reduced 2x (area), = the patches' pixel scale
model = dict(
    _delete_=True,
    type='CascadeLandmarkEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True),
    backbone=small_hrnet(global_width),
    # MSE + online hard keypoint mining (the 8 hardest channels per image; needs num_landmarks >= 8): with the MSE
    # alone, sigma 3 still left one landmark's heatmap flat in 2 of 9 from-scratch cl2023 runs (fold 0: seed 1
    # and a 320 x 384 input; 23.7 and 58.7 mm on landmark 36); with OHKM, seed 1 learned all 38 (20 epochs: MRE
    # 1.900 mm against 2.412, global stage alone 3.488 mm against 3.977 for seed 0: RESULTS.md's 20-epoch
    # ablation table), docs/accuracy_log.md
    head=dict(type='HeatmapHead', in_channels=global_width, out_channels=num_landmarks,
              deconv_out_channels=None, decoder=codec,
              loss=dict(type='SumOfLosses', losses=[dict(type='KeypointMSELoss', use_target_weight=True),
                                                    dict(type='KeypointOHKMMSELoss', use_target_weight=True,
                                                         topk=8)])),
    local=dict(
        backbone=small_hrnet(local_width),
        head=dict(type='HeatmapHead', in_channels=local_width, out_channels=num_landmarks,
                  deconv_out_channels=None, loss=dict(type='KeypointMSELoss', use_target_weight=True),
                  decoder=patch_codec),
        patch_size=patch_codec['input_size'],
        pixel_scale=2.0,
        train=dict(patches_per_image=8, jitter_mm=2.5, max_offset=0.35, rotate_deg=10.0, scale_range=(0.9, 1.1),
                   intensity=dict(prob=0.5), loss_weight=1.0),
        test=dict(iterations=1)),
    test_cfg=dict(flip_test=False, local=True),
    # CPU speed settings (cldetection/precision.py; docs/accuracy_log.md, "CPU speed settings"): channels-last backbones
    # (the same arithmetic; training 1.5x, prediction 1.25x faster on 2 AMD EPYC cores) and bfloat16 backbones
    # where the hardware multiplies it ('auto': CPUs with AVX512-BF16 or AMX, CUDA GPUs from Ampere on; float32
    # elsewhere, where bfloat16 is 1.5-7x slower): training 1.9x, prediction 1.7x faster again. On cl2023 fold 0
    # bfloat16 training scored 1.721 mm (two seeds) against 1.690-1.741 for three float32 runs (RESULTS.md, seed
    # means "bfloat16 training" / "float32 training"), and bfloat16 prediction matched float32 within rounding on
    # three checkpoints (docs/accuracy_log.md). 'fp32': float32 throughout;
    # dict(train=..., test=...) sets the two phases apart.
    channels_last=True,
    precision='auto')

# -------------------------------------------------------------------------------------------------- data
# Restated because MMEngine resolves the base file's variables when it parses it (new codec and transforms).
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=bbox_padding),
    dict(type='RandomBBoxTransform', shift_factor=0.05, shift_prob=0.5, scale_factor=(0.85, 1.15),
         scale_prob=1.0, rotate_factor=10.0, rotate_prob=0.5),
    dict(type='KeepSourceImage', factor=source_factor),
    dict(type='AntiAliasTopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='RandomXRayIntensity', contrast_range=(0.7, 1.3), brightness_delta=25, gamma_range=(0.7, 1.5),
         prob=0.5),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackCephalometricInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=bbox_padding),
    dict(type='KeepSourceImage', factor=source_factor),
    dict(type='AntiAliasTopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='PackCephalometricInputs'),
]
# images decoded once and kept in memory; with that, one loader process keeps up with the model
train_dataloader = dict(batch_size=8, num_workers=1,
                        dataset=dict(cache_images=True, pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(cache_images=True, pipeline=val_pipeline))
test_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                       dataset=dict(pipeline=val_pipeline))
