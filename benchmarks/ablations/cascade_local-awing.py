# Ablation of issue #9 (see docs/accuracy_log.md): the local stage trained on the Adaptive Wing loss (Wang et al.,
# ICCV 2019; MMPose's AdaptiveWingLoss with its default shape) instead of the MSE. The MSE spends most of its
# gradient on the flat background of a heatmap; the Adaptive Wing loss weighs errors on the foreground (the
# Gaussian around the landmark) more, which sharpened face-alignment heatmaps. The global stage keeps MSE + hard
# keypoint mining (its job is to learn every landmark at all). Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(local=dict(head=dict(loss=dict(_delete_=True, type='AdaptiveWingLoss', use_target_weight=True))))
