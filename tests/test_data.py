import shutil

import numpy as np
import pytest
from PIL import Image

from protloc import storage
from protloc.classes import CHANNELS
from protloc.data.hpa import labels_to_matrix, load_sample, parse_labels, read_labels, read_test_ids
from protloc.errors import DataError


def test_real_train_csv_parses(hpa_dir):
    df = read_labels(str(hpa_dir / "train.csv"))
    assert len(df) == 31072
    counts = labels_to_matrix(df["labels"]).sum(axis=0)
    assert counts[0] == 12885 and counts[27] == 11 and counts[25] == 8228  # the README's counts
    assert df.loc[df["id"] == "000a6c98-bb9b-11e8-b2b9-ac1f6b6435d0", "labels"].item() == [
        0,
        1,
        2,
        7,
    ]
    assert len(read_test_ids(str(hpa_dir / "sample_submission.csv"))) == 11702


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Id,Target\na,1\nb,2\na,3\n", r"line 4 \(Id 'a'\): duplicate Id, first seen on line 2"),
        ("Id,Target\na,1\nb,28\n", r"line 3 \(Id 'b'\): class 28 .* outside 0..27"),
        ("Id,Target\na,1\nb,-1\n", r"line 3 \(Id 'b'\): malformed Target"),
        ("Id,Target\na,\n", r"line 2 \(Id 'a'\): empty Target"),
        ("Id,Target\na,1 x\n", r"line 2 \(Id 'a'\): malformed Target '1 x'"),
        ("Id,Target\na,1.5\n", r"line 2 \(Id 'a'\): malformed Target"),
        ("Id,Target\na,3 3\n", r"line 2 \(Id 'a'\): class 3 repeated"),
        ("Id,Labels\na,1\n", r"missing column\(s\) Target"),
        ("Name,Target\na,1\n", r"missing column\(s\) Id"),
        ("Id,Target\na,1,9\n", r"line 2: 3 fields, header has 2"),
        ("", r"file is empty"),
        ("Id,Target\n", r"no label rows"),
    ],
)
def test_bad_labels_name_the_culprit(text, expected):
    with pytest.raises(DataError, match=expected):
        parse_labels(text.encode(), source="train.csv")


def test_labels_not_utf8():
    with pytest.raises(DataError, match=r"train\.csv: not UTF-8"):
        parse_labels(b"Id,Target\n\xff\xfe,1\n", source="train.csv")


def _assemble(hpa_dir, dst, sample_id="s1", ext=".png"):
    """A full RGBY sample from four different real Ids (the shared folder has one channel each)."""
    files = sorted((hpa_dir / "real_channels").glob("*.png"))
    picked = {}
    for ch in CHANNELS:
        picked[ch] = next(p for p in files if p.stem.endswith(f"_{ch}"))
        target = dst / "train" / f"{sample_id}_{ch}{ext}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if ext == ".png":
            shutil.copyfile(picked[ch], target)
        else:
            Image.open(picked[ch]).save(target, quality=95)
    return picked


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
def test_load_real_sample_rgby_order(hpa_dir, tmp_path, ext):
    picked = _assemble(hpa_dir, tmp_path, ext=ext)
    x = load_sample(str(tmp_path), "train", "s1", ext=ext)
    assert x.dtype == np.uint8 and x.shape == (4, 512, 512)
    for i, ch in enumerate(CHANNELS):
        ref = np.asarray(Image.open(picked[ch]))
        if ext == ".jpg":
            assert np.corrcoef(x[i].ravel(), ref.ravel())[0, 1] > 0.95  # lossy, but the same image
        else:
            assert np.array_equal(x[i], ref)
    small = load_sample(str(tmp_path), "train", "s1", size=221, ext=ext)
    assert small.shape == (4, 221, 221)


def test_load_sample_from_s3(hpa_dir, tmp_path, bucket):
    _assemble(hpa_dir, tmp_path)
    storage.upload_dir(tmp_path, f"{bucket}/hpa")
    assert np.array_equal(
        load_sample(f"{bucket}/hpa", "train", "s1"), load_sample(str(tmp_path), "train", "s1")
    )


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("missing", r"sample 's1' channel blue: cannot read .*no such file"),
        ("empty", r"sample 's1' channel blue .*: file is empty"),
        ("truncated", r"sample 's1' channel blue .*: truncated"),
        ("corrupt", r"sample 's1' channel blue .*: corrupt or not an image"),
    ],
)
def test_bad_channel_file_names_id_and_channel(hpa_dir, tmp_path, damage, expected):
    _assemble(hpa_dir, tmp_path)
    path = tmp_path / "train" / "s1_blue.png"
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(DataError, match=expected):
        load_sample(str(tmp_path), "train", "s1")


def test_channels_of_different_sizes(hpa_dir, tmp_path):
    _assemble(hpa_dir, tmp_path)
    path = tmp_path / "train" / "s1_yellow.png"
    Image.open(path).resize((256, 256)).save(path)
    with pytest.raises(DataError, match=r"sample 's1': channels differ in size .*yellow 256x256"):
        load_sample(str(tmp_path), "train", "s1")
