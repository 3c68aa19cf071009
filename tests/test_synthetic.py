from pathlib import Path

import numpy as np
import pytest

from protloc.classes import NUM_CLASSES
from protloc.data.hpa import labels_to_matrix, load_sample, read_labels, read_test_ids
from protloc.errors import ConfigError
from protloc.synthetic import SyntheticSpec, generate, render_sample
from protloc.synthetic.labels import draw_label_sets, label_set_table


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_200_samples_at_256px_layout(tmp_path):
    # Its speed is a `make bench` row (synthetic data), not an assertion here.
    generate(SyntheticSpec(n_train=180, n_test=20, size=256, seed=5, temper=0.5), str(tmp_path))
    labels = read_labels(str(tmp_path / "train.csv"))
    test_ids = read_test_ids(str(tmp_path / "sample_submission.csv"))
    truth = read_labels(str(tmp_path / "test_labels.csv"))
    assert len(labels) == 180 and len(test_ids) == 20 and list(truth["id"]) == test_ids
    assert len(list((tmp_path / "train").glob("*.png"))) == 4 * 180
    x = load_sample(str(tmp_path), "test", test_ids[0])
    assert x.shape == (4, 256, 256) and x.dtype == np.uint8
    assert (x == 0).mean() > 0.2  # background is dark, as in HPA


def test_same_seed_is_byte_identical_any_worker_count(tmp_path):
    spec = SyntheticSpec(n_train=12, n_test=4, size=96, seed=9, temper=0.3)
    generate(spec, str(tmp_path / "a"))
    generate(spec, str(tmp_path / "b"), workers=2)
    generate(SyntheticSpec(12, 4, 96, seed=10, temper=0.3), str(tmp_path / "c"))
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a.keys() != c.keys()


def test_embedded_label_table_is_the_real_distribution(hpa_dir):
    real = read_labels(str(hpa_dir / "train.csv"))
    embedded_sets, embedded_counts = label_set_table()
    real_sets, real_counts = label_set_table(real)
    assert embedded_sets == real_sets
    assert np.array_equal(embedded_counts, real_counts) and embedded_counts.sum() == 31072


def test_temper_brings_rare_classes_into_small_sets():
    rng = np.random.default_rng(0)
    raw = labels_to_matrix(draw_label_sets(600, rng, temper=0.0)).sum(axis=0)
    tempered = labels_to_matrix(draw_label_sets(600, np.random.default_rng(0), temper=1.0)).sum(
        axis=0
    )
    assert (tempered > 0).sum() > (raw > 0).sum()
    assert (tempered > 0).sum() >= 26
    assert raw[0] > 150  # untempered keeps Nucleoplasm dominant (41 % of real images)
    with pytest.raises(ConfigError, match="temper"):
        draw_label_sets(5, rng, temper=1.5)


def _green_share_in_nuclei(labels, seeds=range(6)):
    shares = []
    for seed in seeds:
        x = render_sample(labels, 128, np.random.default_rng(seed)).astype(float)
        nuclei = x[2] > 40
        shares.append(x[1][nuclei].sum() / max(x[1].sum(), 1))
    return float(np.mean(shares))


def test_green_patterns_sit_where_their_class_says():
    # Nuclear classes put their green signal in the (blue) nuclei, cytoplasmic ones outside them.
    for nuclear in (0, 2, 4):
        assert _green_share_in_nuclei([nuclear]) > 0.7, nuclear
    for cytoplasmic in (21, 23, 25):
        assert _green_share_in_nuclei([cytoplasmic]) < 0.25, cytoplasmic


def test_every_class_draws_something_distinct():
    imgs = np.stack(
        [
            render_sample([c], 96, np.random.default_rng(1))[1].astype(float)
            for c in range(NUM_CLASSES)
        ]
    )
    # Same seed = same cells: the green channels differ only by the pattern.
    assert (imgs.reshape(NUM_CLASSES, -1).max(axis=1) > 60).all()
    flat = imgs.reshape(NUM_CLASSES, -1)
    dist = np.abs(flat[:, None] - flat[None]).mean(axis=2)
    off_diagonal = dist[~np.eye(NUM_CLASSES, dtype=bool)]
    assert off_diagonal.min() > 0.5


def test_cli_writes_to_s3(bucket):
    from protloc import storage
    from protloc.synthetic.__main__ import main

    main(["--out", f"{bucket}/syn", "--n-train", "3", "--n-test", "2", "--size", "64"])
    files = storage.list_files(f"{bucket}/syn")
    assert len(files) == 4 * 5 + 3
    assert read_labels(f"{bucket}/syn/train.csv").shape[0] == 3


def test_an_output_folder_under_a_file_is_one_line(tmp_path):
    """Item: ``--out`` under a file was a NotADirectoryError traceback."""
    from tests.conftest import one_line_error, run_python

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        proc = run_python(["-m", "protloc.synthetic", "--out", str(out), "--n-train", "4",
                           "--size", "64"])  # fmt: skip
        one_line_error(proc, f"{out}: a file is in the way")
    assert blocker.read_text() == "x"
