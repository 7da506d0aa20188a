# Ablation of issue #9 (see docs/accuracy_log.md): the local stage's targets as heatmap + offsets (UDP 'combined',
# Huang et al. CVPR 2020; MMPose's td-hm_hrnet-w32_udp-regress recipe) instead of UDP Gaussian heatmaps: per
# landmark a binary class map (a disc of radius 0.0546875 x 32 = 1.75 heatmap pixels, 1.4 mm) and the x and y
# offsets from each heatmap pixel to the landmark, so the estimate is the class map's peak plus a regressed
# offset rather than a Taylor fit of a Gaussian. The head has 3 x K channels, trained by CombinedTargetMSELoss.
# blur_kernel_size 5: the codec blurs the class map with a (2 x 5 + 1)-pixel kernel before the argmax, the same
# kernel as the Gaussian codec's fit (11; the default 11 would blur a 32 x 32 map with a 23-pixel kernel).
# Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

patch_codec = dict(type='UDPHeatmap', input_size=(128, 128), heatmap_size=(32, 32), sigma=2,
                   heatmap_type='combined', blur_kernel_size=5)
# out_channels: 3 maps x 38 landmarks (the option num_landmarks=N sets 3 x N, as it sets N for Gaussian heatmaps)
model = dict(refine=dict(head=dict(out_channels=3 * 38, decoder=patch_codec,
                                   loss=dict(type='CombinedTargetMSELoss', use_target_weight=True))))
