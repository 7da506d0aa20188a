# Ablation of issue #9 (see docs/accuracy_log.md): a wider global stage, branch widths 48/96/192/384 instead of
# 32/64/128/256 (the local stage unchanged). Why: widening it from 16 to 32 was the largest architecture gain
# measured (docs/accuracy_log.md, "The wider global stage becomes the default"), and on the decayed default most of
# the cascade's gap above its local floor comes from points the global stage misses by 2-6 mm
# (benchmarks.studies.cascade_oracle --per-landmark). Cost: ~2.2x the global stage's FLOPs. Everything else as the
# default.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

global_width = 48
model = dict(backbone=dict(extra=dict(
    stage2=dict(num_channels=(global_width, 2 * global_width)),
    stage3=dict(num_channels=(global_width, 2 * global_width, 4 * global_width)),
    stage4=dict(num_channels=(global_width, 2 * global_width, 4 * global_width, 8 * global_width)))),
    head=dict(in_channels=global_width))
