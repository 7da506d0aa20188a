# Ablation of issue #9 (see docs/accuracy_log.md): the global stage of the default config until 2026-11-30, branch
# widths 16/32/64/128 instead of 32/64/128/256 (the local stage unchanged). The RESULTS.md rows of
# cascade_hrnet-s_cpu before that date are this config; the rows named cascade_global-w32 (an ablation file then)
# are today's default. Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

global_width = 16
model = dict(backbone=dict(extra=dict(
    stage2=dict(num_channels=(global_width, 2 * global_width)),
    stage3=dict(num_channels=(global_width, 2 * global_width, 4 * global_width)),
    stage4=dict(num_channels=(global_width, 2 * global_width, 4 * global_width, 8 * global_width)))),
    head=dict(in_channels=global_width))
