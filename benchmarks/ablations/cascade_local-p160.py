# Ablation of issue #9 (see docs/accuracy_log.md): local patches of 160 x 160 instead of 128 x 128 at the same
# 0.2 mm per pixel (32 mm across instead of 25.6; heatmaps 40 x 40, the same 0.8 mm per heatmap pixel). Why: the
# hardest cl2023 landmarks (porion, subspinale, soft-tissue points) are placed badly even from patches centred on
# the truth; more anatomy around them, and more room for a misplaced global estimate, may help where finer pixels
# (0.15 mm/px, 19.2 mm across) did not. Cost: ~1.56x the local stage's FLOPs. Everything else as the default.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

patch_codec = dict(type='UDPHeatmap', input_size=(160, 160), heatmap_size=(40, 40), sigma=2)
model = dict(local=dict(head=dict(decoder=patch_codec), patch_size=patch_codec['input_size']))
