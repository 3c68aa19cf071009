"""Shared fixtures: the real HPA files, a real S3 API (moto on 127.0.0.1), tiny data sets."""

from __future__ import annotations

import socket
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Real competition files shipped with the repository (tests/data/hpa/README.md names the source).
HPA = ROOT / "tests" / "data" / "hpa"

# Credentials that exist only in tests; a secrets test greps logs and artifacts for them.
TEST_KEY_ID = "protlocTESTKEYID0001"
TEST_SECRET = "protlocTESTSECRETdoNotLeak0001"


@pytest.fixture(scope="session")
def hpa_dir() -> Path:
    if not (HPA / "train.csv").is_file():
        pytest.fail(f"real HPA files not found at {HPA}: the repository is incomplete")
    return HPA


def run_python(args: list[str], env: dict | None = None, timeout: float = 300):
    """``python ARGS`` in the repository root, output captured, never raising on failure."""
    import subprocess

    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def one_line_error(proc, *needles: str) -> None:
    """Exit 2, no traceback, the last line 'error: ...' holding every needle."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    for needle in needles:
        assert needle in last, (needle, last)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1, for the whole session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Point boto3 at the moto server with test credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PROTLOC_STORAGE_BACKOFF_S", "0.05")
    return s3_server


@pytest.fixture
def bucket(s3_env) -> str:
    """A fresh bucket; yields its s3:// URI."""
    import boto3

    name = f"protloc-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small synthetic data set at 96 px (64 train, 12 test), shared by the session."""
    from protloc.synthetic import SyntheticSpec, generate

    out = tmp_path_factory.mktemp("tiny-data")
    generate(SyntheticSpec(n_train=64, n_test=12, size=96, seed=3, temper=0.8), str(out))
    return out


@pytest.fixture(scope="session")
def tiny_split(tiny_data, tmp_path_factory) -> Path:
    """The split of tiny_data (no class counts as rare: one draw per sample); returns the folder."""
    from protloc.config import SplitConfig
    from protloc.data.split import run_split

    out = tmp_path_factory.mktemp("tiny-split")
    run_split(
        SplitConfig(val_fraction=0.25, rare_below=0), str(tiny_data / "train.csv"), out=str(out)
    )
    return mark_complete(out)


@pytest.fixture
def data(tiny_data, tmp_path) -> Path:
    """A private copy of tiny_data that a test may change."""
    import shutil

    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A private image cache folder for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("PROTLOC_CACHE_DIR", str(path))
    return path


def mark_complete(folder: Path) -> Path:
    """Mark a hand-made step folder finished, as a step does last (its timing.json)."""
    (folder / "timing.json").write_text('{"step": "test", "seconds": 0, "code_version": "test"}\n')
    return folder


# The default network, Inception-v3: after 2 epochs at 96 px its outputs depend on the image
# (efficientnet_b0's are then the same for every image, a blank one included), which the tests
# of TTA, ranks and thresholds need.
TINY_CYCLE = {"size": 96, "batch_size": 16, "epochs": 2, "workers": 0, "log_every": 5}
# The tests of the train step's process (killed, resumed, failing storage, locks) are not about
# the network: they train the smallest registered one, whose checkpoints (33 MB with the
# optimizer's state) are a fifth of Inception-v3's (175 MB), each written every epoch.
TEST_ARCH = "efficientnet_b0"


@pytest.fixture(scope="session")
def weighted_split(tiny_data, tmp_path_factory) -> Path:
    """tiny_data split with resampling (classes under 5 training samples drawn 5x): ~190 draws
    per epoch, enough steps to see the loss fall. Same validation fold as tiny_split."""
    from protloc.config import SplitConfig
    from protloc.data.split import run_split

    out = tmp_path_factory.mktemp("weighted-split")
    run_split(
        SplitConfig(val_fraction=0.25, rare_below=5), str(tiny_data / "train.csv"), out=str(out)
    )
    return mark_complete(out)


@pytest.fixture(scope="session")
def cycle0(tiny_data, weighted_split, tmp_path_factory):
    """One cycle on the 64-sample set at 96 px for 2 epochs: (out folder, metrics, seconds)."""
    import time

    from protloc.config import TrainConfig
    from protloc.steps import train_step

    out = tmp_path_factory.mktemp("cycle0")
    cache = tmp_path_factory.mktemp("cycle-cache")
    t0 = time.perf_counter()
    cfg = TrainConfig(**TINY_CYCLE, cache_dir=str(cache))
    metrics = train_step(cfg, data_root=str(tiny_data), split=str(weighted_split), out=str(out))
    return out, metrics, time.perf_counter() - t0


def train_cmd(tiny_data, tiny_split, out, epochs: int = 3) -> list[str]:
    """The train CLI on tiny_data at 80 px, batch 8, no loader workers, the smallest network
    (:data:`TEST_ARCH`), as a command line."""
    return [
        sys.executable,
        "-m",
        "components.train",
        "--split",
        str(tiny_split),
        "--data-root",
        str(tiny_data),
        "--out",
        str(out),
        "--size",
        "80",
        "--batch-size",
        "8",
        "--epochs",
        str(epochs),
        "--workers",
        "0",
        "--arch",
        TEST_ARCH,
    ]


# ----------------------------------------------------------------------------- GCS and Azure

# Azurite's well-known development account (public, in Azure's docs): the emulator's only key.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE = ROOT / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"


@pytest.fixture(scope="session")
def gcs_server():
    """gcp-storage-emulator's GCS JSON API on 127.0.0.1, in memory; yields its URL."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gs_bucket(gcs_server, monkeypatch) -> str:
    """A fresh bucket on the GCS emulator (gcsfs finds it by STORAGE_EMULATOR_HOST)."""
    import fsspec

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    # No GCE metadata server here: google.auth would wait for one before falling back.
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("PROTLOC_STORAGE_BACKOFF_S", "0.05")
    name = f"protloc-test-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("gcs", skip_instance_cache=True).mkdir(name)
    return f"gs://{name}"


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    """Azurite's Blob service on 127.0.0.1 (`make test` puts it in .venv/azurite); yields
    its connection string."""
    import subprocess
    import time
    import urllib.request

    if not AZURITE.exists():
        pytest.fail(f"Azurite not found at {AZURITE}: `make test` installs it (with npm)")
    port = free_port()
    folder = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
         str(folder), "--silent", "--skipApiVersionCheck", "--loose"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}?comp=list", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # it answers (unauthenticated): up
        except OSError:
            time.sleep(0.1)
    yield (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={url};"
    )
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def az_container(azurite_server, monkeypatch) -> str:
    """A fresh container on Azurite; adlfs finds it by AZURE_STORAGE_CONNECTION_STRING."""
    import fsspec

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server)
    monkeypatch.setenv("PROTLOC_STORAGE_BACKOFF_S", "0.05")
    name = f"protloc-test-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("az", skip_instance_cache=True).mkdir(name)
    return f"az://{name}"


@pytest.fixture(params=["s3", "gs", "az"])
def any_bucket(request) -> str:
    """A fresh bucket (container) on each object store's local server in turn."""
    return request.getfixturevalue(
        {"s3": "bucket", "gs": "gs_bucket", "az": "az_container"}[request.param]
    )


def thresholds_doc(values: list) -> dict:
    """A whole thresholds.json (what the thresholds step writes) holding ``values``."""
    return {
        "thresholds": values,
        "method": "per_class",
        "alpha": 0.1,
        "macro_f1": 0.5,
        "macro_f1_at_0.5": 0.4,
        "macro_f1_crossfit": 0.45,
        "comparison": {"per_class": {"fit": 0.5, "crossfit": 0.45}},
    }


@pytest.fixture(scope="session")
def evaluated_run(cycle0, tiny_data, weighted_split, tmp_path_factory):
    """infer -> thresholds -> submit -> bundle on cycle0's snapshot; the folders by name."""
    out, _, _ = cycle0
    root = tmp_path_factory.mktemp("bundle-run")
    folders = {k: str(root / k) for k in ("infer", "thresholds", "submit", "bundle")}
    data = {"data_root": str(tiny_data)}
    # one image per batch, as predict below: the same float32 sums, equal probabilities
    from protloc.config import (
        BundleConfig,
        InferConfig,
        SubmitConfig,
        ThresholdsConfig,
    )
    from protloc.steps import bundle_step, infer_step, submit_step, thresholds_step

    infer = InferConfig(workers=0, tta=2, infer_batch_size=1)
    infer_step(infer, **data, split=str(weighted_split), last_cycle=str(out), out=folders["infer"])
    thresholds_step(
        ThresholdsConfig(),
        split=str(weighted_split),
        predictions=folders["infer"],
        out=folders["thresholds"],
    )
    reads = {"predictions": folders["infer"], "thresholds": folders["thresholds"]}
    submit_step(SubmitConfig(), **data, **reads, out=folders["submit"])
    bundle_step(BundleConfig(), **reads, out=folders["bundle"])
    return folders
