# Speed setting of issue #9 (see docs/accuracy.md, "CPU speed settings"): the default config with both backbones
# in bfloat16 autocast, in training and prediction (model.precision='bf16'; heads, losses and decoding float32).
# Fast only on CPUs that multiply bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere slower than float32.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(precision='bf16')
