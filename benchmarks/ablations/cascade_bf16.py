# Speed setting of issue #9 (see docs/accuracy_log.md, "CPU speed settings"): the default config with bfloat16 forced
# on, whatever the hardware (model.precision='bf16'; the default's 'auto' picks it only on CPUs with AVX512-BF16
# or AMX; heads, losses and decoding stay float32): to time it, or to show what it costs where it is emulated.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(precision='bf16')
