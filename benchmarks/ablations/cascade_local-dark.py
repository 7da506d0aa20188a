# Ablation of issue #9 (see docs/accuracy_log.md): the local stage's targets and decoding as MSRA heatmaps with the
# DARK fit (unbiased=True) instead of UDP; same 32 x 32 heatmap and sigma 2. Everything else as
# cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

patch_codec = dict(type='MSRAHeatmap', input_size=(128, 128), heatmap_size=(32, 32), sigma=2, unbiased=True)
model = dict(local=dict(head=dict(decoder=patch_codec)))
