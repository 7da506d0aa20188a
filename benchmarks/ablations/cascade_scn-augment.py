# Ablation of issue #9 (see docs/accuracy_log.md): shape augmentation after the Spatial Configuration Net recipe, on
# both stages. Trained from scratch on ~135 images, the cascade memorises them: on its own ISBI training images
# the 120-epoch model scores 0.43 mm (local stage on true centres 0.41), on Test1 1.54 (1.34). Added: each axis
# scaled independently (+-15 %) and a smooth elastic field (5 x 5 control points, SD 1 % of the input's side)
# on the global input, 70 % of samples; on every local patch, +-15 % per axis, an elastic field (4 x 4, SD 2 %),
# rotation +-15 deg instead of 10 and isotropic scale +-15 % instead of 10. Everything else as
# cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

model = dict(refine=dict(train=dict(rotate_deg=15.0, scale_range=(0.85, 1.15),
                                    deform=dict(axis_scale=0.15, elastic_sd=0.02, grid=4, prob=0.7))))
_affine = [i for i, t in enumerate(_base_.train_pipeline) if t['type'] == 'AntiAliasTopdownAffine'][0]
train_pipeline = _base_.train_pipeline[:_affine + 1] + [
    dict(type='RandomElasticDeform', axis_scale=0.15, elastic_sd=0.01, grid=5, prob=0.7)] + \
    _base_.train_pipeline[_affine + 1:]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
