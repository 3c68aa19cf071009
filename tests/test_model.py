import pytest
import torch
import torchvision

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
    with pytest.raises(ArtifactError, match="only 0 tensors match inception_v3"):
        create_model(pretrained=path)
    with pytest.raises(ConfigError, match="no such file"):
        create_model(pretrained=tmp_path / "missing.pth")


def test_checkpoint_of_other_class_count_or_arch_refused(tmp_path):
    other = create_model(num_classes=10)
    with pytest.raises(ArtifactError, match="checkpoint has 10 classes, this model has 28"):
        load_weights(create_model(), other.state_dict(), "x.pt")
    resnet = torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(ArtifactError, match="not a inception_v3_bn checkpoint"):
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
    with pytest.raises(ArtifactError, match="'resnet18' model, expected 'inception_v3_bn'"):
        load_checkpoint(str(tmp_path / "c.pt"))
    save_checkpoint({**state, "arch": "inception_v3_bn", "num_classes": 10}, str(tmp_path / "d.pt"))
    with pytest.raises(ArtifactError, match="checkpoint has 10 classes, expected 28"):
        load_checkpoint(str(tmp_path / "d.pt"))
    with pytest.raises(ArtifactError, match=r"missing\.pt"):
        load_checkpoint(str(tmp_path / "missing.pt"))
