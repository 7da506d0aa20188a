# Ablation of issue #9 (see docs/accuracy_log.md): horizontal flip as augmentation (MMPose's RandomFlip, half of the
# training samples). A lateral cephalogram has no left/right landmark pairs, so a flip maps every landmark to
# itself (the dataset's flip_indices are the identity); the mirrored radiograph faces the other way, which test
# images never do: the question is whether the extra appearance variety outweighs that. The flip comes before
# KeepSourceImage, so the local stage's patches are cut from the flipped radiograph too. Everything else as
# cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

_bbox = [i for i, t in enumerate(_base_.train_pipeline) if t['type'] == 'GetBBoxCenterScale'][0]
train_pipeline = _base_.train_pipeline[:_bbox + 1] + [dict(type='RandomFlip', direction='horizontal', prob=0.5)] + \
    _base_.train_pipeline[_bbox + 1:]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
