# Ablation of issue #9 (see docs/accuracy_log.md): the default's AdamW (as in cascade_adamw.py) with twice the decoupled
# weight decay of that file (1.0 instead of 0.5). Why: decay 0.5 gained 0.029 mm on cl2023 fold 0 (two seeds) and
# 0.003 on fold 1; a stronger shrink (exp(-0.77 x 1.0) = 0.46 over the schedule without gradients, against 0.68) tells
# whether the decay is still too weak to regularise the local stage on fold 1, or whether fold 0's gain was its own.
# Measured (cl2023, means of two seeds): fold 0 1.684 mm, fold 1 1.800, against Adam's 1.712 / 1.824 and decay 2.0's
# 1.671 / 1.783 (the default since 2026-12-06; benchmarks/RESULTS.md, seed means and "What each technique bought").
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

optim_wrapper = dict(optimizer=dict(weight_decay=1.0))
