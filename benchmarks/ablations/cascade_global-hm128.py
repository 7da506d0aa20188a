# Ablation of issue #9 (see docs/accuracy_log.md): the global stage's heatmaps at stride 2 instead of 4: 128 x 160
# (1.5 mm per heatmap pixel at 0.1 mm/px instead of 3) from one 4 x 4 deconvolution of the HRNet output, UDP with
# sigma 4 (6 mm, against sigma 3 = 9 mm at 64 x 80). On cl2023 the cascade does not correct the global estimate of
# the landmarks its local stage cannot find from the patch (25, 27, 28, 29, porion, gonion): there the global
# stage's precision is the final one. Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

codec = dict(type='UDPHeatmap', input_size=(256, 320), heatmap_size=(128, 160), sigma=4)
model = dict(head=dict(deconv_out_channels=({{_base_.global_width}}, ), deconv_kernel_sizes=(4, ), decoder=codec))
# the base pipeline with the new codec in GenerateTarget (lists are replaced, not merged, by inheritance)
train_pipeline = [dict(t, encoder=codec) if t['type'] == 'GenerateTarget' else t for t in _base_.train_pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
