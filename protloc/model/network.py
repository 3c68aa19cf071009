"""The network: torchvision's Inception-v3 for 4-channel input, a BatchNorm after every Inception
block, global average pooling, dropout and a linear layer to 28 logits.

Global average pooling makes it size-agnostic (any input from 75 px, which progressive resizing
needs). ``pretrained`` is a torchvision ``inception_v3`` ImageNet state dict, a local file or an
``s3://`` object: never downloaded from the internet. Its first-layer RGB filters are kept for R, G and B, and the yellow filters start as
the mean of the red and green ones (yellow light is red plus green).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models.inception import BasicConv2d, Inception3

from protloc import storage
from protloc.classes import ARCH, NUM_CLASSES
from protloc.config import MIN_SIZE
from protloc.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

# Inception blocks and their output channels, in forward order.
BLOCKS: tuple[tuple[str, int], ...] = (
    ("Mixed_5b", 256),
    ("Mixed_5c", 288),
    ("Mixed_5d", 288),
    ("Mixed_6a", 768),
    ("Mixed_6b", 768),
    ("Mixed_6c", 768),
    ("Mixed_6d", 768),
    ("Mixed_6e", 768),
    ("Mixed_7a", 1280),
    ("Mixed_7b", 2048),
    ("Mixed_7c", 2048),
)


class InceptionV3BN(nn.Module):
    """Inception-v3 (no aux logits) with a BatchNorm after every Inception block."""

    def __init__(self, num_classes: int = NUM_CLASSES, in_chans: int = 4, dropout: float = 0.5):
        super().__init__()
        base = Inception3(num_classes=1000, aux_logits=False, init_weights=True)
        base.Conv2d_1a_3x3 = BasicConv2d(in_chans, 32, kernel_size=3, stride=2)
        self.stem = nn.Sequential(
            base.Conv2d_1a_3x3,
            base.Conv2d_2a_3x3,
            base.Conv2d_2b_3x3,
            nn.MaxPool2d(3, stride=2),
            base.Conv2d_3b_1x1,
            base.Conv2d_4a_3x3,
            nn.MaxPool2d(3, stride=2),
        )
        self.blocks = nn.Sequential(
            *[nn.Sequential(getattr(base, name), nn.BatchNorm2d(ch)) for name, ch in BLOCKS]
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2048, num_classes)
        self.num_classes = num_classes
        self.in_chans = in_chans
        nn.init.trunc_normal_(self.stem[0].conv.weight, std=0.1, a=-2, b=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


def init_head(model: InceptionV3BN, class_prior: torch.Tensor | None, std: float = 0.01) -> None:
    """A small final layer with its bias at the classes' prior log-odds.

    torchvision's init gives the final layer std 0.1: logits start with std ~4 and BCE ~2.2. A
    small layer whose bias says 'each class at its training frequency' starts from a sane point.
    """
    nn.init.normal_(model.fc.weight, std=std)
    if class_prior is None:
        nn.init.zeros_(model.fc.bias)
        return
    p = class_prior.clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        model.fc.bias.copy_(torch.log(p / (1 - p)))


def _torchvision_key(key: str) -> str | None:
    """Map one of our parameter names to torchvision's inception_v3 name (None: no counterpart)."""
    stem_names = [
        "Conv2d_1a_3x3",
        "Conv2d_2a_3x3",
        "Conv2d_2b_3x3",
        None,
        "Conv2d_3b_1x1",
        "Conv2d_4a_3x3",
        None,
    ]
    parts = key.split(".")
    if parts[0] == "stem":
        name = stem_names[int(parts[1])]
        return None if name is None else ".".join([name, *parts[2:]])
    if parts[0] == "blocks" and parts[2] == "0":
        return ".".join([BLOCKS[int(parts[1])][0], *parts[3:]])
    return None


def load_pretrained(model: InceptionV3BN, path: str | Path) -> None:
    """Load a torchvision inception_v3 state dict (local or s3://); the new BatchNorms and the
    head stay."""
    path = str(path)
    if not storage.exists(path):
        raise ConfigError(f"pretrained weights {path}: no such file (they are never downloaded)")
    try:
        source = torch.load(
            io.BytesIO(storage.read_bytes(path)), map_location="cpu", weights_only=True
        )
    except Exception as exc:
        raise ArtifactError(
            f"pretrained weights {path}: not a readable state dict ({exc})"
        ) from None
    if isinstance(source, dict) and "model" in source and isinstance(source["model"], dict):
        source = source["model"]
    target = model.state_dict()
    loaded = 0
    for key in target:
        tv_key = _torchvision_key(key)
        if tv_key is None or tv_key not in source:
            continue
        value = source[tv_key]
        if key == "stem.0.conv.weight" and value.shape[1] == 3 and model.in_chans == 4:
            yellow = value[:, :2].mean(dim=1, keepdim=True)
            value = torch.cat([value, yellow], dim=1)
        if value.shape != target[key].shape:
            raise ArtifactError(
                f"pretrained weights {path}: {tv_key} has shape {tuple(value.shape)}, "
                f"expected {tuple(target[key].shape)} (not a torchvision inception_v3?)"
            )
        target[key] = value
        loaded += 1
    if loaded < 100:
        raise ArtifactError(f"pretrained weights {path}: only {loaded} tensors match inception_v3")
    model.load_state_dict(target)
    log.info("loaded %d pretrained tensors from %s", loaded, path)


def create_model(
    num_classes: int = NUM_CLASSES,
    in_chans: int = 4,
    pretrained: str | Path | None = None,
    dropout: float = 0.5,
) -> InceptionV3BN:
    """The protloc network, optionally from ImageNet weights (local or s3://)."""
    if num_classes < 1 or in_chans < 1:
        raise ConfigError(f"num_classes and in_chans must be >= 1, got {num_classes}, {in_chans}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    model = InceptionV3BN(num_classes, in_chans, dropout)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def check_size(size: int) -> None:
    """Refuse input sizes the network cannot take."""
    if size < MIN_SIZE:
        raise ConfigError(f"size {size} px is under Inception-v3's minimum of {MIN_SIZE} px")


def load_weights(model: InceptionV3BN, state: dict, source: str) -> None:
    """Load a state dict, refusing another architecture or class count with a clear error."""
    fc = state.get("fc.weight")
    if fc is not None and fc.shape[0] != model.num_classes:
        raise ArtifactError(
            f"{source}: checkpoint has {fc.shape[0]} classes, this model has {model.num_classes}"
        )
    missing = set(model.state_dict()) - set(state)
    unexpected = set(state) - set(model.state_dict())
    if missing or unexpected:
        example = sorted(missing or unexpected)[0]
        raise ArtifactError(
            f"{source}: not a {ARCH} checkpoint ({len(missing)} tensors missing, "
            f"{len(unexpected)} unexpected, e.g. {example!r})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ArtifactError(f"{source}: weights do not fit {ARCH}: {str(exc)[:300]}") from None


def num_parameters(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
