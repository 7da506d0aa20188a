# Ablation of issue #9 (see docs/accuracy_log.md): the local stage sees context around its patch. Its three input
# channels, which otherwise repeat the grey 25.6 mm patch, become the patch (0.2 mm/px), a 51.2 mm field at
# 0.4 mm/px and a 102.4 mm field at 0.8 mm/px, all 128 x 128 and centred on the same point (refine.context).
# Same network, same cost: only the first convolution reads the channels. Why: the cascade sits well above the
# local stage's floor (ISBI senior: 1.49 against 1.20 mm) and the hardest landmarks (gonion, porion,
# articulare) are decided by structures wider than the patch. Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(refine=dict(context=(1, 2, 4)))
