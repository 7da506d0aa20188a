# Ablation of issue #9 (see docs/accuracy_log.md): a deeper local network, two HRNet modules in stages 3 and 4 instead
# of one (stock HRNet-W32 has 4 and 3): more depth, receptive field and multi-scale fusion per patch at the same
# branch widths (24/48/96/192). Why: the local stage's own error dominates and every wider or finer variant
# measured so far (width 32, 0.15 mm/px, 64 x 64 heatmaps) left it where it was; depth is the dimension not yet
# tried. Cost: ~1.5x the local stage's FLOPs (benchmarks.cascade_cost). Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(local=dict(backbone=dict(extra=dict(stage3=dict(num_modules=2), stage4=dict(num_modules=2)))))
