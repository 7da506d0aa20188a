# Ablation of issue #9 (see docs/accuracy.md): the global stage's loss is the heatmap MSE plus online hard keypoint
# mining (MMPose's KeypointOHKMMSELoss, the 8 hardest of the 38 channels per image), against the flat-channel
# collapse (sigma 3 with the MSE alone lost landmark 36 with seed 1). Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(head=dict(loss=dict(_delete_=True, type='SumOfLosses', losses=[
    dict(type='KeypointMSELoss', use_target_weight=True),
    dict(type='KeypointOHKMMSELoss', use_target_weight=True, topk=8)])))
