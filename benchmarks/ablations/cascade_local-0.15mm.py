# Ablation of issue #9 (see docs/accuracy_log.md): the local stage's patches at 1.5 radiograph pixels per patch pixel
# (0.15 mm at 0.1 mm/px; a 128-pixel patch covers 19.2 mm) instead of 2 (0.2 mm, 25.6 mm), cut from the
# full-resolution grey radiograph (source factor 1) so that the finer pixels carry real detail. Everything else as
# cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

source_factor = 1
model = dict(local=dict(pixel_scale=1.5))
# restated: MMEngine resolves the base file's variables (codec, source_factor) when it parses it
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding={{_base_.bbox_padding}}),
    dict(type='RandomBBoxTransform', shift_factor=0.05, shift_prob=0.5, scale_factor=(0.85, 1.15),
         scale_prob=1.0, rotate_factor=10.0, rotate_prob=0.5),
    dict(type='KeepSourceImage', factor=source_factor),
    dict(type='AntiAliasTopdownAffine', input_size={{_base_.codec.input_size}}, use_udp=True),
    dict(type='RandomXRayIntensity', contrast_range=(0.7, 1.3), brightness_delta=25, gamma_range=(0.7, 1.5),
         prob=0.5),
    dict(type='GenerateTarget', encoder={{_base_.codec}}),
    dict(type='PackCephalometricInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding={{_base_.bbox_padding}}),
    dict(type='KeepSourceImage', factor=source_factor),
    dict(type='AntiAliasTopdownAffine', input_size={{_base_.codec.input_size}}, use_udp=True),
    dict(type='PackCephalometricInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = dict(dataset=dict(pipeline=val_pipeline))
