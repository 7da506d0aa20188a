# Ablation of issue #9 (see docs/accuracy_log.md): the default cascade with decoupled weight decay 3.0 instead of its
# 2.0. Why: 2.0 beat 1.0 and 0.5 on both cl2023 folds and 4.0 was worse on seed 0 of both (1.687 / 1.797 mm
# against 1.672 / 1.764); this checks the one step between.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

optim_wrapper = dict(optimizer=dict(weight_decay=3.0))
