# Speed setting of issue #9 (see docs/accuracy.md, "CPU speed settings"): the default config with both backbones
# in bfloat16 autocast in training too, not only in prediction (model.precision='bf16'; heads, losses and decoding
# float32): training 2.8x faster than float32 NCHW on 2 AMD EPYC cores, 1.721 mm on cl2023 fold 0 (two seeds)
# against 1.690-1.706 for float32.
# Fast only on CPUs that multiply bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere slower than float32.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(precision='bf16')
