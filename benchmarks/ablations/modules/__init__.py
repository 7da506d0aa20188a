"""Registered modules that only ablation configs use (research; not part of the ``cldetection`` product)."""
