# Ablation of issue #9 (see docs/accuracy_log.md, "What to try next", coarse-then-fine local scales): two patch stages
# that refine in turn. The default's local stage (128 x 128 patches at 0.2 mm/px over 25.6 mm, trained on centres
# N(0, 2.5 mm) off the truth) becomes the middle stage; a second one, the same small HRNet on 128 x 128 patches at
# 0.15 mm/px (19.2 mm, cut from the full-resolution radiograph: source factor 1, as cascade_local-0.15mm), starts
# from its estimate and is trained on centres N(0, 1.5 mm) off the truth. Why: at 20 epochs 0.15 mm/px patches
# were more precise when centred on the truth (floor 1.35 mm against 1.42) but lost the points the global stage
# misplaced by more than ~6 mm; behind the 0.2 mm/px stage (cascade error ~1.7 mm) they start close enough. Cost:
# one more patch pass per landmark in training and prediction. Everything else as cascade_hrnet-s_cpu.py.
_base_ = './cascade_local-0.15mm.py'

model = dict(
    middle=dict(_base_.model.refine, pixel_scale=2.0),  # the default's local stage (the source reduced 2x)
    refine=dict(train=dict(jitter_mm=1.5)))
