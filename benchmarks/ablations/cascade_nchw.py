# Speed setting of issue #9 (see docs/accuracy.md, "CPU speed settings"): the default config with the backbones'
# weights in PyTorch's default NCHW layout (model.channels_last=False), as every run before 2026-12-02.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(channels_last=False)
