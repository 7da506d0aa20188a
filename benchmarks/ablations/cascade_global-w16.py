# Ablation of issue #9 (see docs/accuracy.md): a wider global stage, branch widths 32/64/128/256 instead of
# 16/32/64/128 (the local stage unchanged). With 38 landmarks, the default global head reads 38 heatmaps off 16
# stride-4 feature channels; on cl2023 fold 0 the cascade (1.756-1.768 mm) sits 0.40 mm above its local stage's
# floor (patches centred on the truth: 1.354), so the global stage's misses are the larger part of what is left.
# Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

global_width = 32
model = dict(backbone=dict(extra=dict(
    stage2=dict(num_channels=(global_width, 2 * global_width)),
    stage3=dict(num_channels=(global_width, 2 * global_width, 4 * global_width)),
    stage4=dict(num_channels=(global_width, 2 * global_width, 4 * global_width, 8 * global_width)))),
    head=dict(in_channels=global_width))
