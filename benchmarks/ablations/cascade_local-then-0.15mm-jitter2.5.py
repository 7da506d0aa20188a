# Ablation of issue #9 (see docs/accuracy_log.md): cascade_local-then-0.15mm with its 0.15 mm/px stage trained on patch
# centres N(0, 2.5 mm) off the truth instead of 1.5 mm, the middle stage's own training offsets. Why: on the same
# checkpoints the 0.15 mm/px stage, trained on small offsets, kept much of the middle stage's error (it is 0.85-0.94
# mm from the truth when centred on it, and more precise started from the global estimates than from the middle
# stage's on points the global stage already had within 2 mm). Everything else as cascade_local-then-0.15mm.py.
_base_ = './cascade_local-then-0.15mm.py'

model = dict(refine=dict(train=dict(jitter_mm=2.5)))
