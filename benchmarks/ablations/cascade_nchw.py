# Speed setting of issue #9 (see docs/accuracy_log.md, "CPU speed settings"): the default config as every run before
# 2026-12-02 ran it: the backbones' weights in PyTorch's default NCHW layout, float32 in training and prediction.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(channels_last=False, precision='fp32')
