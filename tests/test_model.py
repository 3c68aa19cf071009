import pytest
import torch
import torchvision

from protloc.architectures import ARCHITECTURES
from protloc.errors import ArtifactError, ConfigError
from protloc.model.checkpoint import load_checkpoint, save_checkpoint
from protloc.model.network import create_model, init_head, load_weights


@pytest.fixture(scope="module")
def model():
    m = create_model()
    m.eval()
    return m


@pytest.mark.parametrize("size", [75, 96, 221, 299])
def test_output_shape_at_any_size(model, size):
    with torch.no_grad():
        assert model(torch.zeros(1, 4, size, size)).shape == (1, 28)


def test_batchnorm_after_every_inception_block(model):
    assert len(model.blocks) == 11
    for block in model.blocks:
        assert isinstance(block[1], torch.nn.BatchNorm2d)
    assert model.stem[0].conv.in_channels == 4


def test_size_under_75_refused():
    from protloc.model.network import check_size

    with pytest.raises(ConfigError, match="size 74 px is under"):
        check_size(74)


def test_head_starts_at_prior_log_odds():
    m = create_model(dropout=0.0)
    prior = torch.full((28,), 0.1)
    init_head(m, prior)
    m.train()  # batch statistics: a fresh model's BN running stats mean nothing yet
    with torch.no_grad():
        p = torch.sigmoid(m(torch.randn(8, 4, 96, 96)))
    assert torch.allclose(p.mean(), torch.tensor(0.1), atol=0.05)
    assert m.fc.weight.std() < 0.02


@pytest.mark.slow
def test_pretrained_local_weights_rgb_to_rgby(tmp_path):
    tv = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    path = tmp_path / "inception_v3.pth"
    torch.save(tv.state_dict(), path)
    m = create_model(pretrained=path)
    w = m.stem[0].conv.weight
    rgb = tv.Conv2d_1a_3x3.conv.weight
    assert torch.equal(w[:, :3], rgb)
    assert torch.allclose(w[:, 3], rgb[:, :2].mean(dim=1))
    assert torch.equal(m.blocks[10][0].branch_pool.conv.weight, tv.Mixed_7c.branch_pool.conv.weight)


def test_pretrained_other_architecture_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ArtifactError, match=r"tensors are missing .*torchvision inception_v3"):
        create_model(pretrained=path)
    with pytest.raises(ConfigError, match="no such file"):
        create_model(pretrained=tmp_path / "missing.pth")


def test_checkpoint_of_other_class_count_or_arch_refused(tmp_path):
    other = create_model(num_classes=10)
    with pytest.raises(ArtifactError, match="checkpoint has 10 classes, this model has 28"):
        load_weights(create_model(), other.state_dict(), "x.pt")
    resnet = torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(ArtifactError, match="not a inception_v3 checkpoint"):
        load_weights(create_model(), {k: v for k, v in resnet.items() if k != "fc.weight"}, "r.pt")
    state = {
        "arch": "resnet18",
        "num_classes": 28,
        "model": {},
        "size": 96,
        "config": {},
        "norm": {},
        "epochs_done": 1,
        "complete": True,
    }
    save_checkpoint(state, str(tmp_path / "c.pt"))
    with pytest.raises(ArtifactError, match="'resnet18' model; this protloc builds inception_v3, "):
        load_checkpoint(str(tmp_path / "c.pt"))
    save_checkpoint({**state, "arch": "inception_v3", "num_classes": 10}, str(tmp_path / "d.pt"))
    with pytest.raises(ArtifactError, match="checkpoint has 10 classes, expected 28"):
        load_checkpoint(str(tmp_path / "d.pt"))
    with pytest.raises(ArtifactError, match=r"missing\.pt"):
        load_checkpoint(str(tmp_path / "missing.pt"))


# torchvision's constructor of each registered network (protloc's name -> torchvision's)
def _torchvision_model(arch):
    if arch == "inception_v3":
        return torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    return getattr(torchvision.models, arch)(weights=None)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_takes_rgby_and_imagenet_weights(arch, tmp_path):
    """Each registered network: 28 logits from 4 channels at the smallest size, and a
    torchvision ImageNet state dict loads into it, RGB filters kept and yellow = mean(R, G)."""
    tv = _torchvision_model(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save(tv.state_dict(), path)
    model = create_model(arch, pretrained=path).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 4, 75, 75)).shape == (2, 28)
    first = model.state_dict()[model.first_conv]
    rgb = tv.state_dict()[model.torchvision_key(model.first_conv)]
    assert first.shape[1] == 4 and torch.equal(first[:, :3], rgb)
    assert torch.allclose(first[:, 3], rgb[:, :2].mean(dim=1))
    loaded = {k for k in model.state_dict() if model.torchvision_key(k)}
    last = sorted(loaded)[-1]  # a tensor deep in the network, not only the first layer
    assert torch.equal(model.state_dict()[last], tv.state_dict()[model.torchvision_key(last)])
    other = "resnet50" if arch != "resnet50" else "densenet121"
    with pytest.raises(ArtifactError, match=rf"not a torchvision {other} state dict"):
        create_model(other, pretrained=path)


def test_an_unknown_architecture_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"architecture must be one of inception_v3, .*got 'vgg'"):
        create_model("vgg")


def test_avgmax_pooling_concatenates_the_average_and_the_max():
    from protloc.model.pooling import make_pool

    x = torch.randn(3, 5, 7, 6)
    pool, width = make_pool("avgmax")
    want = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
    assert width == 2 and torch.equal(pool(x).flatten(1), want)


@pytest.mark.parametrize("arch", ["inception_v3", "densenet121", "resnet50", "efficientnet_b0"])
def test_every_family_takes_the_avgmax_head(arch):
    """The classifier sees twice the features, the average's then the max's, of the same body."""
    torch.manual_seed(0)
    avg = create_model(arch, dropout=0.0).eval()
    both = create_model(arch, dropout=0.0, pool="avgmax").eval()
    assert both.fc.in_features == 2 * avg.fc.in_features
    both.load_state_dict(
        {k: v for k, v in avg.state_dict().items() if not k.startswith("fc.")}, strict=False
    )
    n = avg.fc.in_features
    with torch.no_grad():  # the max half's weights zeroed: the avgmax network is the avg one
        both.fc.weight.zero_()
        both.fc.weight[:, :n] = avg.fc.weight
        both.fc.bias.copy_(avg.fc.bias)
        x = torch.rand(2, 4, 96, 96)
        assert torch.allclose(both(x), avg(x), atol=1e-5)


def test_a_checkpoint_of_an_unknown_pooling_is_refused(tmp_path):
    state = {"arch": "inception_v3", "pool": "median", "num_classes": 28, "model": {}}
    state |= {"size": 96, "config": {}, "norm": {}, "epochs_done": 1, "complete": True}
    save_checkpoint(state, str(tmp_path / "c.pt"))
    with pytest.raises(
        ArtifactError, match=r"c\.pt: checkpoint pools with 'median'; .* avg, avgmax"
    ):
        load_checkpoint(str(tmp_path / "c.pt"))
