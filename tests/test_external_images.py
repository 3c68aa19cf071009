"""HPAv18-format images: colour-coded RGB JPEGs at 2048 px, 16-bit TIFFs, mixed extensions.

Each file is made here from the real channel PNGs, so the expected channel is known."""

import io

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from protloc.classes import CHANNELS
from protloc.data.hpa import decode_samples, load_sample
from protloc.data.identity import DataListing
from protloc.errors import DataError

PLANE = {"red": 0, "green": 1, "blue": 2}


def _real_channel(hpa_dir, channel: str, size: int) -> np.ndarray:
    path = sorted((hpa_dir / "real_channels").glob(f"*_{channel}.png"))[0]
    return np.asarray(Image.open(path).convert("L").resize((size, size), Image.BILINEAR))


def colour_coded(gray: np.ndarray, channel: str) -> np.ndarray:
    """HPAv18's display colour: red in R, green in G, blue in B, yellow in R and G."""
    rgb = np.zeros((*gray.shape, 3), dtype=np.uint8)
    for plane in (0, 1) if channel == "yellow" else (PLANE[channel],):
        rgb[..., plane] = gray
    return rgb


def write_hpav18(hpa_dir, folder, sample_id: str, size: int = 2048) -> None:
    """One sample as HPAv18 stores it: four colour-coded JPEGs (quality 90, like the server's)."""
    folder.mkdir(parents=True, exist_ok=True)
    for ch in CHANNELS:
        rgb = colour_coded(_real_channel(hpa_dir, ch, size), ch)
        Image.fromarray(rgb).save(folder / f"{sample_id}_{ch}.jpg", quality=90)


def _decoded_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_colour_coded_jpeg_channel_is_its_plane_not_luminance(hpa_dir, tmp_path):
    write_hpav18(hpa_dir, tmp_path / "train", "v18", size=2048)
    x = load_sample(str(tmp_path), "train", "v18", size=None, ext=".jpg")
    assert x.shape == (4, 2048, 2048) and x.dtype == np.uint8
    for i, ch in enumerate(CHANNELS):
        rgb = _decoded_rgb(tmp_path / "train" / f"v18_{ch}.jpg")
        if ch == "yellow":
            want = (rgb[..., 0].astype(np.uint16) + rgb[..., 1] + 1) // 2
        else:
            want = rgb[..., PLANE[ch]]
        assert np.array_equal(x[i], want), ch
        # what the old code took (ITU-R 601 luminance) is far darker for red and blue
        luminance = np.asarray(Image.open(tmp_path / "train" / f"v18_{ch}.jpg").convert("L"))
        if ch in ("red", "blue"):
            assert x[i].mean() > 2 * luminance.mean(), ch
    # and the plane is the channel that was written, up to JPEG's loss
    truth = _real_channel(hpa_dir, "green", 2048)
    assert np.abs(x[1].astype(int) - truth).mean() < 2.0


def test_large_jpeg_is_decoded_reduced(hpa_dir, tmp_path):
    """At 512 px a 2048-px JPEG is decoded at 1/4 scale (draft): close to full decoding then
    resizing, within JPEG's own loss."""
    write_hpav18(hpa_dir, tmp_path / "train", "v18", size=2048)
    reduced = load_sample(str(tmp_path), "train", "v18", size=512, ext=".jpg")
    full = load_sample(str(tmp_path), "train", "v18", size=None, ext=".jpg")
    resized = np.stack(
        [np.asarray(Image.fromarray(c).resize((512, 512), Image.BILINEAR)) for c in full]
    )
    assert reduced.shape == (4, 512, 512)
    diff = np.abs(reduced.astype(int) - resized.astype(int))
    assert diff.mean() < 2.0, diff.mean()
    assert not np.array_equal(reduced, resized)  # it really took the reduced path


def _tiff16(values: np.ndarray, max_sample: int | None) -> bytes:
    info = TiffImagePlugin.ImageFileDirectory_v2()
    if max_sample is not None:
        info[281] = max_sample  # MaxSampleValue
    buf = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buf, "TIFF", tiffinfo=info)
    return buf.getvalue()


def test_16_bit_tiff_scaled_by_its_real_bit_depth(tmp_path):
    rng = np.random.default_rng(0)
    twelve = rng.integers(0, 4096, size=(64, 64))
    twelve[0, 0] = 4095
    folder = tmp_path / "train"
    folder.mkdir()
    for ch in CHANNELS:
        (folder / f"t12_{ch}.tif").write_bytes(_tiff16(twelve, 4095))
        (folder / f"t16_{ch}.tif").write_bytes(_tiff16(twelve * 16, None))
    x12 = load_sample(str(tmp_path), "train", "t12", ext=".tif")
    assert np.array_equal(x12[0], (twelve * 255 + 2047) // 4095)
    assert x12[0].max() == 255  # the old code's top 8 bits gave 0..15
    x16 = load_sample(str(tmp_path), "train", "t16", ext=".tif")
    assert np.array_equal(x16[2], (twelve * 16 * 255 + 32767) // 65535)
    (folder / "bad_red.tif").write_bytes(_tiff16(twelve, 1023))
    with pytest.raises(DataError, match=r"sample 'bad' channel red .*4095 exceeds .* 1023"):
        load_sample(str(tmp_path), "train", "bad", ext=".tif")


def _saved(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_every_pixel_format_decodes_right_or_is_refused_by_name():
    """Item: a 32-bit integer TIFF decoded to zeros, a multi-page TIFF used its first page, and
    12-bit data in a 16-bit PNG without a depth tag was near black with one warning per
    process. The rule now: 8- and 16-bit gray (scaled by MaxSampleValue, else 16 bits) and RGB
    decode; anything else is refused naming the file, each file on its own."""
    from protloc.data.hpa import decode_channel

    rng = np.random.default_rng(1)
    twelve = rng.integers(0, 4096, size=(32, 32)).astype(np.uint16)
    cases = {
        "32-bit integer": (_saved(Image.fromarray(twelve.astype(np.int32) * 1000), "TIFF"),
                           "32-bit integer pixels are not supported"),
        "float": (_saved(Image.fromarray(twelve.astype(np.float32)), "TIFF"),
                  "pixel mode F is not supported"),
        "two pages": (_saved(Image.fromarray(twelve), "TIFF", save_all=True,
                             append_images=[Image.fromarray(twelve)]), "a file of 2 pages"),
    }  # fmt: skip
    for data, message in cases.values():
        with pytest.raises(DataError, match=rf"sample 's' channel red \(f\): {message}"):
            decode_channel(data, "s", "red", "f")
    png12 = _saved(Image.fromarray(twelve), "PNG")
    for _ in range(2):  # every file, not the first of a process only
        with pytest.raises(DataError, match=r"brightest pixel is \d+: it holds 12-bit"):
            decode_channel(png12, "s", "red", "f")
    wide = (twelve.astype(np.uint32) * 16).astype(np.uint16)
    wide[0, 0] = 65535
    got = np.asarray(decode_channel(_saved(Image.fromarray(wide), "PNG"), "s", "red", "f"))
    assert np.array_equal(got, (wide.astype(np.uint32) * 255 + 32767) // 65535)


def test_png_and_jpeg_samples_mix_in_one_folder(hpa_dir, tmp_path):
    folder = tmp_path / "train"
    write_hpav18(hpa_dir, folder, "v18", size=1024)
    for ch in CHANNELS:
        Image.fromarray(_real_channel(hpa_dir, ch, 512)).save(folder / f"kag_{ch}.png")
    exts = DataListing(str(tmp_path)).extensions("train", ["kag", "v18", "none"])
    assert exts == {"kag": ".png", "v18": ".jpg", "none": None}
    got = dict(decode_samples(str(tmp_path), "train", ["kag", "v18"], 256, 1, False, exts))
    assert got["kag"].shape == got["v18"].shape == (4, 256, 256)
    with pytest.raises(DataError, match=r"sample 'none': no red channel file"):
        list(decode_samples(str(tmp_path), "train", ["kag", "none"], 256, 1, False, exts))
