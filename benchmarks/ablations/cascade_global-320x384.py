# Ablation of issue #9 (see docs/accuracy_log.md): the global stage on 320 x 384 instead of 256 x 320 (UDP heatmaps
# 80 x 96, sigma 3 in heatmap pixels as the default; HRNet needs sides divisible by 32, so not the 320 x 400 of
# the radiographs' aspect ratio: the box is padded to 320 x 384). Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

codec = dict(type='UDPHeatmap', input_size=(320, 384), heatmap_size=(80, 96), sigma=3)
model = dict(head=dict(decoder=codec))
# restated: MMEngine resolves the base file's variables (codec, source_factor) when it parses it
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding={{_base_.bbox_padding}}),
    dict(type='RandomBBoxTransform', shift_factor=0.05, shift_prob=0.5, scale_factor=(0.85, 1.15),
         scale_prob=1.0, rotate_factor=10.0, rotate_prob=0.5),
    dict(type='KeepSourceImage', factor={{_base_.source_factor}}),
    dict(type='AntiAliasTopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='RandomXRayIntensity', contrast_range=(0.7, 1.3), brightness_delta=25, gamma_range=(0.7, 1.5),
         prob=0.5),
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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = dict(dataset=dict(pipeline=val_pipeline))
