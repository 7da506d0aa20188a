# Speed setting of issue #9 (see docs/accuracy_log.md, "CPU speed settings"): the default config in float32 throughout
# (model.precision='fp32'), channels-last: what the default was between the two commits of 2026-12-02, and what a
# CPU without bfloat16 hardware runs under the default's 'auto'.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(precision='fp32')
