# Ablation of issue #9 (see docs/accuracy_log.md): the default cascade, evaluated and saved with an exponential moving
# average of its weights (MMEngine's EMAHook; BatchNorm statistics averaged too). Why: with 154 training images
# the last weights carry the noise of the last few batches; an average over the last ~10 epochs is the cheapest
# known remedy (RTMPose trains every model with one). Horizon 1 / momentum = 200 iterations, about 10 of the 40
# epochs at 154 images and batch 8; the average starts at epoch 15 so that the untrained weights of the first
# epochs do not linger in it (their weight after 25 more epochs would be ~6 %; from epoch 15 it is < 1 % by the
# end, 0.995^490). Validation, the saved checkpoints (their state_dict) and therefore steps 4 and 5 use the
# average; training itself is unchanged. Cost: one lerp over the parameters per iteration.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

custom_hooks = [dict(type='SyncBuffersHook'), dict(type='EpochSeedHook'),
                dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.005, update_buffers=True,
                     begin_epoch=15)]
