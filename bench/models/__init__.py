"""Model registries: segmentation networks and image classifiers, built by name from a trial config.

Importing this package is light: each factory imports MONAI or smp when it builds its network.

Example:
    >>> from bench.models import SEG_MODELS
    >>> net = SEG_MODELS.create("unet", in_channels=1, classes=1, encoder="resnet18")
"""

from bench.registry import Registry

SEG_MODELS: Registry = Registry("segmentation model")
CLASSIFIERS: Registry = Registry("classifier")

from bench.models import classifiers, monai_models, smp_models  # noqa: F401  (registration side effects)

__all__ = ["CLASSIFIERS", "SEG_MODELS"]
