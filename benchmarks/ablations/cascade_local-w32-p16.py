# Ablation of issue #9 (see docs/accuracy_log.md): more local-stage capacity and more local training examples, the
# two spent together because bfloat16 training (13-20 min for the default) leaves most of the 2-hour budget
# unused. The local stage's network is the global stage's (small_hrnet(32): branch widths 32/64/128/256 instead
# of 24/48/96/192, ~1.7x the local FLOPs), trained on 16 patches per image and iteration instead of 8 (twice the
# local examples per epoch). Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(local=dict(backbone=_base_.model.backbone, head=dict(in_channels=_base_.global_width),
                         train=dict(patches_per_image=16)))
