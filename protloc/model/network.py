"""The paper's network, torchvision's Inception-v3 for 4-channel input with a BatchNorm after every
Inception block, global average pooling, dropout and a linear layer to 28 logits; and what every
registered network (``protloc.architectures``) shares: building one by name, loading ImageNet
weights into it, loading a checkpoint's weights.

Global average pooling makes it size-agnostic (any input from 75 px, which progressive resizing
needs). ``pretrained`` is the torchvision ImageNet state dict of the chosen network, a local file
or a bucket object: never downloaded from the internet. Its first-layer RGB filters are kept for
R, G and B, and the yellow filters start as the mean of the red and green ones (yellow light is
red plus green).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models.inception import BasicConv2d, Inception3

from protloc import storage
from protloc.architectures import ARCHITECTURES, MIN_SIZE
from protloc.classes import NUM_CLASSES
from protloc.errors import ArtifactError, ConfigError
from protloc.model.pooling import make_pool

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

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        in_chans: int = 4,
        dropout: float = 0.5,
        pool: str = "avg",
    ):
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
        self.pool, width = make_pool(pool)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2048 * width, num_classes)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.first_conv = "stem.0.conv.weight"
        nn.init.trunc_normal_(self.stem[0].conv.weight, std=0.1, a=-2, b=2)

    @staticmethod
    def torchvision_key(key: str) -> str | None:
        """Our parameter name's counterpart in torchvision's inception_v3 (None: none)."""
        return _torchvision_key(key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


def init_head(model: nn.Module, class_prior: torch.Tensor | None, std: float = 0.01) -> None:
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


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load the torchvision ImageNet state dict of ``model``'s network (local or a bucket
    URI) into it: every tensor with a torchvision counterpart must be there and fit; the new
    BatchNorms and the head stay."""
    path, arch = str(path), getattr(model, "arch", "the network")
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
    wanted = {k: model.torchvision_key(k) for k in target}
    # Older torchvision files hold no BatchNorm step counters; nothing reads them.
    wanted = {k: v for k, v in wanted.items() if v and not v.endswith("num_batches_tracked")}
    missing = [v for v in wanted.values() if v not in source]
    if missing:
        raise ArtifactError(
            f"pretrained weights {path}: {len(missing)} of {len(wanted)} {arch} tensors are "
            f"missing (e.g. {missing[0]!r}): not a torchvision {arch} state dict?"
        )
    for key, tv_key in wanted.items():
        value = source[tv_key]
        if key == model.first_conv and value.shape[1] == 3 and model.in_chans == 4:
            yellow = value[:, :2].mean(dim=1, keepdim=True)
            value = torch.cat([value, yellow], dim=1)
        if value.shape != target[key].shape:
            raise ArtifactError(
                f"pretrained weights {path}: {tv_key} has shape {tuple(value.shape)}, "
                f"expected {tuple(target[key].shape)} (not a torchvision {arch}?)"
            )
        target[key] = value
    model.load_state_dict(target)
    log.info("loaded %d pretrained tensors from %s", len(wanted), path)


def create_model(
    arch: str = "inception_v3",
    num_classes: int = NUM_CLASSES,
    in_chans: int = 4,
    pretrained: str | Path | None = None,
    dropout: float = 0.5,
    pool: str = "avg",
) -> nn.Module:
    """The registered network ``arch`` with the registered global ``pool``ing, optionally from
    ImageNet weights (local or a bucket)."""
    if num_classes < 1 or in_chans < 1:
        raise ConfigError(f"num_classes and in_chans must be >= 1, got {num_classes}, {in_chans}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    network = ARCHITECTURES.get(arch)
    if network.torchvision:
        from protloc.model.backbones import Backbone

        model = Backbone(network.torchvision, num_classes, in_chans, dropout, pool)
    else:
        model = InceptionV3BN(num_classes, in_chans, dropout, pool)
    model.arch, model.pool_name = arch, pool
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def check_size(size: int) -> None:
    """Refuse input sizes the network cannot take."""
    if size < MIN_SIZE:
        raise ConfigError(f"size {size} px is under Inception-v3's minimum of {MIN_SIZE} px")


def load_weights(model: nn.Module, state: dict, source: str) -> None:
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
            f"{source}: not a {model.arch} checkpoint ({len(missing)} tensors missing, "
            f"{len(unexpected)} unexpected, e.g. {example!r})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{source}: weights do not fit {model.arch}: {str(exc)[:300]}"
        ) from None


def num_parameters(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
