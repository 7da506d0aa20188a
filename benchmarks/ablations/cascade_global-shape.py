# Ablation of issue #9 (see docs/accuracy_log.md): shape augmentation of the Spatial Configuration Net recipe on the
# global stage only. On cl2023 the cascade's remaining error sits on landmarks whose final estimate is roughly
# the global stage's (25, 27-29, porion, gonion), and the global stage sees only ~130 radiographs; adding shapes
# the training images do not have is the one way to more examples without new labels. Added to the default:
# each axis of the global input scaled independently (+-20 %) and a smooth elastic field (5 x 5 control points,
# SD 1 % of the input's longer side), 80 % of samples, and rotation +-14 deg (0.25 rad) on 70 % of samples
# instead of +-10 deg on 50 %. The local stage is untouched: its patches are cut from the undeformed source image
# (the removed ablation cascade_scn-augment deformed both stages and bought nothing on ISBI senior: 1.526 against
# 1.491 mm, its Runs row in benchmarks/RESULTS.md).
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

_pipeline = [dict(t) for t in _base_.train_pipeline]
for _t in _pipeline:
    if _t['type'] == 'RandomBBoxTransform':
        _t.update(rotate_factor=14.0, rotate_prob=0.7)
_affine = [i for i, t in enumerate(_pipeline) if t['type'] == 'AntiAliasTopdownAffine'][0]
train_pipeline = _pipeline[:_affine + 1] + [
    dict(type='RandomElasticDeform', axis_scale=0.2, elastic_sd=0.01, grid=5, prob=0.8)] + _pipeline[_affine + 1:]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
# RandomElasticDeform is research code (benchmarks/ablations/modules/): run from the repository root
custom_imports = dict(imports=['cldetection', 'benchmarks.ablations.modules.elastic_deform'], allow_failed_imports=False)
