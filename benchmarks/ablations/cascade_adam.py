# Ablation of issue #9 (see docs/accuracy_log.md): the default cascade trained with Adam and no weight decay, the
# default until 2026-12-06 (every cl2023 and ISBI figure of the default before then). AdamW with decay 2.0 replaced
# it: cl2023 fold 0 1.712 -> 1.671 mm, fold 1 1.824 -> 1.783 (means of two seeds each; benchmarks/RESULTS.md, the
# generated "What each technique bought"; this config's runs are the recipe "Adam (the default until 2026-12-06)").
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

optim_wrapper = dict(_delete_=True, optimizer=dict(type='Adam', lr=2e-3))
