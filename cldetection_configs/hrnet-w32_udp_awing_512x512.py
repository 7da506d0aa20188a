# The default model (HRNet-W32, UDP, 512 x 512 -> 128 x 128) trained with the Adaptive Wing loss (Wang et al.,
# ICCV 2019) instead of the heatmap MSE: it weights the errors near each heatmap peak more, which tends to
# sharpen localisation. Everything else, including the switches (data_root, pretrained, num_landmarks), is
# the default config's.
_base_ = './hrnet-w32_udp_512x512.py'

model = dict(head=dict(loss=dict(_delete_=True, type='AdaptiveWingLoss', use_target_weight=True)))
