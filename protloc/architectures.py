"""The networks, registered by name: ``arch`` in the train config is one of them.

An entry is what ``protloc.model.network.create_model`` builds: the paper's Inception-v3 with
BatchNorms (``protloc.model.network``), or a torchvision classification network of a family
``protloc.model.backbones`` adapts (ResNet, DenseNet, EfficientNet), each for 4-channel (RGBY)
input with a ``fc`` layer to the classes; ImageNet weights load into any of them (RGB filters
kept, yellow as the mean of red and green). The checkpoint, the bundle and predict record the
name and build the same network from it. This module imports neither torch nor the model code:
the configs read its names on the CPU image, which has no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from protloc.registry import Registry

ARCHITECTURES = Registry("architecture")
# The smallest input side every registered network takes (Inception-v3's stem needs 75 px).
MIN_SIZE = 75


@dataclass(frozen=True)
class Network:
    """What to build: ``torchvision`` names a torchvision model builder ('' for the paper's
    Inception-v3 with BatchNorms)."""

    torchvision: str = ""


ARCHITECTURES.register(
    "inception_v3", "Inception-v3 with a BatchNorm after every Inception block (the paper's)"
)(Network())
for _name, _help in (
    ("densenet121", "torchvision DenseNet-121 (the 2018 winner's backbone)"),
    ("resnet50", "torchvision ResNet-50"),
    ("efficientnet_b0", "torchvision EfficientNet-B0 (the smallest: 4 M parameters)"),
    ("efficientnet_b1", "torchvision EfficientNet-B1"),
    ("efficientnet_b2", "torchvision EfficientNet-B2"),
    ("efficientnet_b3", "torchvision EfficientNet-B3"),
):
    ARCHITECTURES.register(_name, _help)(Network(_name))


@dataclass(frozen=True)
class Pooling:
    """A global pooling before the classifier: ``width`` features per channel of the body."""

    width: int


# ``pool`` in the train config; every network takes either (protloc.model.pooling builds it).
POOLINGS = Registry("pooling")
POOLINGS.register("avg", "global average pooling (the paper's)")(Pooling(1))
POOLINGS.register(
    "avgmax", "global average and max pooling, concatenated (the 2018 winner's head)"
)(Pooling(2))
