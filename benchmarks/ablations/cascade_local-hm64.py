# Ablation of issue #9 (see docs/accuracy_log.md): the local stage's heatmap at 64 x 64 instead of 32 x 32 (one 2x
# deconvolution in its head: 0.4 mm per heatmap pixel instead of 0.8), sigma 4 = the same 1.6 mm as the default's
# sigma 2 at 32 x 32. Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

patch_codec = dict(type='UDPHeatmap', input_size=(128, 128), heatmap_size=(64, 64), sigma=4)
model = dict(local=dict(head=dict(deconv_out_channels=(16, ), deconv_kernel_sizes=(4, ), decoder=patch_codec)))
