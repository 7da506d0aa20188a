# Ablation of issue #9 (see docs/accuracy_log.md): the local stage of the default config until 2026-12-01, branch
# widths 16/32/64/128 instead of 24/48/96/192 (the global stage unchanged). The RESULTS.md rows of
# cascade_hrnet-s_cpu before that date are this config; the rows named cascade_local-w24 (an ablation file then)
# are today's default. Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

local_width = 16
model = dict(local=dict(
    backbone=dict(extra=dict(
        stage2=dict(num_channels=(local_width, 2 * local_width)),
        stage3=dict(num_channels=(local_width, 2 * local_width, 4 * local_width)),
        stage4=dict(num_channels=(local_width, 2 * local_width, 4 * local_width, 8 * local_width)))),
    head=dict(in_channels=local_width)))
