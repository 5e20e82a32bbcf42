"""Image classifiers (MONAI networks), 2D by default."""

from __future__ import annotations

from monai.networks.nets import resnet10

from bench.models import CLASSIFIERS


@CLASSIFIERS.register("resnet10", library="monai")
def resnet10_classifier(in_channels: int = 1, num_classes: int = 2, spatial_dims: int = 2):
    """MONAI ResNet-10 (He 2016), trained from scratch."""
    return resnet10(spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=num_classes)
