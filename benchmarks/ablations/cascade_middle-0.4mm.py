# Ablation of issue #9 (see docs/accuracy_log.md): a middle patch stage between the global and the local stage.
#
# Why: on cl2023 the local stage (25.6 mm patches at 0.2 mm/px, trained on centres N(0, 2.5 mm) off the truth)
# ends at its floor where the global stage is within 2 mm, but keeps most of a 2-9 mm global error (fold 0: points
# with global error 2-4 mm end at 1.68 mm against a floor of 1.35, 4-6 mm at 3.58 against 2.54); trained on wider
# offsets it loses its precision (N(0, 5 mm): floor 1.89 against 1.43). The middle stage takes the wide offsets
# instead: 96 x 96 patches at 4 radiograph pixels per patch pixel (38.4 mm at 0.4 mm/px, cut from the source
# reduced once more by area averaging), trained on centres N(0, 4 mm) off the truth; the local stage then starts
# from its estimate. Same small HRNet as the local stage; ~0.56 x its cost (96^2 against 128^2 pixels).
# Everything else as cascade_hrnet-s_cpu.py.
_base_ = '../../cldetection_configs/cascade_hrnet-s_cpu.py'

middle_codec = dict(type='UDPHeatmap', input_size=(96, 96), heatmap_size=(24, 24), sigma=2)
model = dict(middle=dict(
    backbone={{_base_.model.refine.backbone}},  # the local stage's small HRNet (measured with widths 16/32/64/128)
    head=dict(type='HeatmapHead', in_channels={{_base_.refine_width}}, out_channels={{_base_.num_landmarks}},
              deconv_out_channels=None, loss=dict(type='KeypointMSELoss', use_target_weight=True),
              decoder=middle_codec),
    patch_size=middle_codec['input_size'],
    pixel_scale=4.0,
    train=dict(patches_per_image=8, jitter_mm=4.0, max_offset=0.35, rotate_deg=10.0, scale_range=(0.9, 1.1),
               intensity=dict(prob=0.5), loss_weight=1.0),
    test=dict(iterations=1)))
