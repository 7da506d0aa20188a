# Ablation of issue #9 (see docs/accuracy.md): a wider local stage, branch widths 24/48/96/192 instead of
# 16/32/64/128 (the global stage unchanged). The local stage's own error (patches centred on the truth) is the
# cascade's floor, and it overfits 130 images; this asks whether more capacity, not more epochs, lowers it.
# Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

refine_width = 24
model = dict(refine=dict(
    backbone=dict(extra=dict(
        stage2=dict(num_channels=(refine_width, 2 * refine_width)),
        stage3=dict(num_channels=(refine_width, 2 * refine_width, 4 * refine_width)),
        stage4=dict(num_channels=(refine_width, 2 * refine_width, 4 * refine_width, 8 * refine_width)))),
    head=dict(in_channels=refine_width)))
