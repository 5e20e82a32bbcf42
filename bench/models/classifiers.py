"""Image classifiers (MONAI networks, trained from scratch), 2D by default, 3D with spatial_dims=3.

MONAI is imported when a classifier is built, so listing them stays light. All take ``in_channels``, ``num_classes`` and ``spatial_dims`` and run on inputs as small as 32×32.
The guidance strategies in ``bench.guidance`` find their feature stages by module name (ResNet
``layer1..4``, DenseNet ``denseblock1..4``, EfficientNet ``_blocks``), see ``bench.guidance.feature_stages``.
"""

from __future__ import annotations

from bench.errors import ConfigError
from bench.models import CLASSIFIERS


def _dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise ConfigError(f"classifier spatial_dims must be 2 or 3, but got {spatial_dims}.")
    return spatial_dims


@CLASSIFIERS.register("resnet10", dims=(2, 3), library="monai")
def resnet10_classifier(in_channels: int = 1, num_classes: int = 2, spatial_dims: int = 2):
    """MONAI ResNet-10 (He 2016), trained from scratch."""
    from monai.networks.nets import resnet10

    return resnet10(spatial_dims=_dims(spatial_dims), n_input_channels=in_channels, num_classes=num_classes)


@CLASSIFIERS.register("resnet18", dims=(2, 3), library="monai")
def resnet18_classifier(in_channels: int = 1, num_classes: int = 2, spatial_dims: int = 2):
    """MONAI ResNet-18 (He 2016), trained from scratch."""
    from monai.networks.nets import resnet18

    return resnet18(spatial_dims=_dims(spatial_dims), n_input_channels=in_channels, num_classes=num_classes)


@CLASSIFIERS.register("densenet121", dims=(2, 3), library="monai")
def densenet121_classifier(
    in_channels: int = 1,
    num_classes: int = 2,
    spatial_dims: int = 2,
    init_features: int = 32,
    growth_rate: int = 16,
):
    """MONAI DenseNet-121 (Huang 2017), narrowed by default (32 initial features, growth 16) for small data."""
    from monai.networks.nets import DenseNet121

    return DenseNet121(
        spatial_dims=_dims(spatial_dims),
        in_channels=in_channels,
        out_channels=num_classes,
        init_features=init_features,
        growth_rate=growth_rate,
    )


@CLASSIFIERS.register("efficientnet-b0", dims=(2, 3), library="monai")
def efficientnet_b0_classifier(in_channels: int = 1, num_classes: int = 2, spatial_dims: int = 2):
    """MONAI EfficientNet-B0 (Tan & Le 2019), no pretrained weights."""
    from monai.networks.nets import EfficientNetBN

    return EfficientNetBN(
        "efficientnet-b0",
        pretrained=False,
        spatial_dims=_dims(spatial_dims),
        in_channels=in_channels,
        num_classes=num_classes,
    )
