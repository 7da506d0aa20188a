# Ablation of issue #9 (see docs/accuracy_log.md): the local stage trained on patches whose centre is offset from the
# truth by N(0, 5 mm) per axis instead of 2.5 mm (still cut at 35 % of the 25.6 mm patch). With 2.5 mm the local
# stage leans on the patch centre (ISBI senior: its error grows from patches centred on the truth to 5 mm offsets,
# the floor columns of benchmarks/RESULTS.md's cascade-ablation tables), so a global miss of a few millimetres is
# only partly corrected. Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(local=dict(train=dict(jitter_mm=5.0)))
