# Ablation of issue #9 (see docs/accuracy_log.md): a deeper global network, two HRNet modules in stages 3 and 4
# instead of one, at the same branch widths (32/64/128/256). Why: on the decayed default (cl2023 fold 1 seed 0)
# most of the cascade's gap above its local floor (patches centred on the truth) comes from the 47 % of points the
# global stage misses by 2-6 mm, because the local stage leans on the patch centre (benchmarks.studies.cascade_oracle
# --per-landmark; docs/accuracy_log.md, "The local stage's last untried dimensions"). A better global stage moves
# those centres. Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(backbone=dict(extra=dict(stage3=dict(num_modules=2), stage4=dict(num_modules=2))))
