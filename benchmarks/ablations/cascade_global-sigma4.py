# Ablation of issue #9 (see docs/accuracy_log.md): the global stage's UDP heatmaps with sigma 4 instead of 3 (64 x 80,
# ~15 mm FWHM at 0.1 mm/px), against the flat-channel collapse (sigma 2 left 2-3 landmarks unlearned; sigma 3
# still lost landmark 36 with seed 1). The local stage gives the precision. Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

codec = dict(type='UDPHeatmap', input_size=(256, 320), heatmap_size=(64, 80), sigma=4)
model = dict(head=dict(decoder=codec))
# the base pipeline with the new codec in GenerateTarget (lists are replaced, not merged, by inheritance)
train_pipeline = [dict(t, encoder=codec) if t['type'] == 'GenerateTarget' else t for t in _base_.train_pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
