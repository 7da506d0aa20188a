"""cldetection: cephalometric landmark detection (CL-Detection 2023) as a plugin for stock MMPose.

Importing the package applies the stack's compatibility fixes (``cldetection.compat``) and registers our
dataset, metric, transforms and hooks into MMPose's registries, so configs reach everything with::

    custom_imports = dict(imports=['cldetection'], allow_failed_imports=False)
"""
from . import compat

compat.apply()

from .cascade import CascadeLandmarkEstimator  # noqa: E402
from .dataset import CephalometricDataset  # noqa: E402  (registration needs compat applied first)
from .ensemble import LandmarkEnsemble  # noqa: E402
from .hooks import EpochSeedHook  # noqa: E402
from .losses import SumOfLosses  # noqa: E402
from .metric import CephalometricMetric  # noqa: E402
from .transforms import (AntiAliasTopdownAffine, KeepSourceImage, PackCephalometricInputs,  # noqa: E402
                         RandomXRayIntensity)

__version__ = '0.1.0'
__all__ = ['AntiAliasTopdownAffine', 'CascadeLandmarkEstimator', 'CephalometricDataset', 'CephalometricMetric',
           'EpochSeedHook', 'KeepSourceImage', 'LandmarkEnsemble', 'PackCephalometricInputs', 'RandomXRayIntensity',
           'SumOfLosses', '__version__']
