"""torchvision classification networks as protloc networks: 4-channel input, the registered
global pooling (``protloc.model.pooling``), then dropout and a linear layer to the classes
(``fc``, as Inception-v3's).

The torchvision model is kept whole as ``body`` (its classifier replaced by an identity, its
pooling by ours), so its ImageNet state dict loads key for key under ``body.``.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from protloc.model.pooling import make_pool

# Where each family keeps its first convolution, its classifier and its global pooling
# (attribute paths; DenseNet pools in its forward, so protloc runs its features, then pools).
_FAMILIES = {
    "resnet": ("conv1", "fc", "avgpool"),
    "densenet": ("features.conv0", "classifier", ""),
    "efficientnet": ("features.0.0", "classifier", "avgpool"),
}


def _family(name: str) -> tuple[str, str, str]:
    return next(v for k, v in _FAMILIES.items() if name.startswith(k))


def _get(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = getattr(module, part) if not part.isdigit() else module[int(part)]
    return module


def _set(module: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, last = path.rpartition(".")
    owner = _get(module, parent) if parent else module
    if last.isdigit():
        owner[int(last)] = new
    else:
        setattr(owner, last, new)


class Backbone(nn.Module):
    """A torchvision network ``name`` for ``in_chans`` channels and ``num_classes`` logits."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        in_chans: int = 4,
        dropout: float = 0.5,
        pool: str = "avg",
    ):
        super().__init__()
        first, head, pooling = _family(name)
        body = getattr(torchvision.models, name)(weights=None)
        conv = _get(body, first)
        _set(
            body,
            first,
            nn.Conv2d(
                in_chans,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                bias=conv.bias is not None,
            ),
        )
        classifier = _get(body, head)
        linear = classifier if isinstance(classifier, nn.Linear) else classifier[-1]
        _set(body, head, nn.Identity())
        module, width = make_pool(pool)
        self.pool = None if pooling else module  # None: the body pools (with ours)
        if pooling:
            _set(body, pooling, module)
        self.body = body
        self.first_conv = f"body.{first}.weight"
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(linear.in_features * width, num_classes)
        self.num_classes = num_classes
        self.in_chans = in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is None:
            features = self.body(x)
        else:  # DenseNet: its features and final ReLU, then our pooling
            features = torch.flatten(self.pool(F.relu(self.body.features(x))), 1)
        return self.fc(self.dropout(features))

    @staticmethod
    def torchvision_key(key: str) -> str | None:
        """Our parameter name's counterpart in torchvision's state dict (None: no counterpart)."""
        return key.removeprefix("body.") if key.startswith("body.") else None
