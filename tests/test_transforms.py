import numpy as np
import pytest
import torch

from protloc.data.transforms import D4_SIZE, d4, d4_torch, normalize


def _reference(x: np.ndarray, k: int) -> np.ndarray:
    y = np.rot90(x, k % 4, axes=(1, 2))
    return y[:, :, ::-1] if k >= 4 else y


@pytest.mark.parametrize("shape", [(4, 512, 512), (4, 221, 221), (4, 75, 75), (4, 40, 70)])
def test_d4_matches_rot90_and_flip_and_returns_a_new_array(shape):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    outs = []
    for k in range(D4_SIZE):
        y = d4(x, k)
        assert np.array_equal(y, _reference(x, k)), k
        assert y.flags.c_contiguous and y.flags.writeable and not np.shares_memory(x, y)
        outs.append(y.tobytes())
        if shape[1] == shape[2]:  # the batched version used by test-time augmentation agrees
            batch = torch.from_numpy(x)[None]
            assert np.array_equal(d4_torch(batch, k)[0].numpy(), y)
    assert len(set(outs)) == D4_SIZE  # eight different symmetries


def test_normalize_is_the_per_channel_standardisation():
    batch = torch.randint(0, 256, (3, 4, 20, 20), dtype=torch.uint8)
    mean, std = torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([0.5, 0.6, 0.7, 0.8])
    expected = (batch.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    assert torch.allclose(normalize(batch, mean, std), expected, atol=1e-5)
    assert batch.dtype == torch.uint8  # the input is left alone
