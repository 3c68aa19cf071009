"""The HPAv18 downloader against a local HTTP server in the image server's layout, and
external data through split, prepare and a kfp.local run."""

import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import pipeline
from protloc.classes import CHANNELS
from protloc.config import SplitConfig
from protloc.data.hpav18 import download, image_url, main
from protloc.data.identity import DataListing
from protloc.data.manifest import read_manifest
from protloc.data.split import run_split
from protloc.errors import ArtifactError, ConfigError, DataError
from protloc.train.schedule import Cycle
from tests.conftest import ROOT
from tests.test_external_images import colour_coded

IDS = ["10580_1610_C1_1", "10580_1610_C1_2", "1234_99_A1_3"]


class Server:
    """http.server on 127.0.0.1 over a folder; ``flaky`` paths answer 503 once, ``truncate``
    paths send half their body once, ``trickle`` paths send a byte every 0.1 s, ``bad_length``
    paths a Content-Length that is not a number; every request is counted."""

    def __init__(self, folder: Path):
        self.folder, self.requests, self.flaky, self.truncate = folder, [], set(), set()
        self.trickle, self.bad_length = set(), set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                path = server.folder / self.path.lstrip("/")
                if self.path in server.flaky:
                    server.flaky.discard(self.path)
                    self.send_error(503)
                    return
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                bad = self.path in server.bad_length
                self.send_header("Content-Length", "abc" if bad else str(len(body)))
                self.end_headers()
                if self.path in server.trickle:
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(0.1)
                    return
                if self.path in server.truncate:
                    server.truncate.discard(self.path)
                    body = body[: len(body) // 2]
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/images"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server(hpa_dir, tmp_path):
    """HPAv18's layout: images/{antibody}/{rest}_{colour}.jpg, colour-coded 256-px JPEGs."""
    rng = np.random.default_rng(0)
    for sample_id in IDS:
        folder, _, rest = sample_id.partition("_")
        (tmp_path / "site" / "images" / folder).mkdir(parents=True, exist_ok=True)
        for ch in CHANNELS:
            gray = rng.integers(0, 255, (256, 256), dtype=np.uint8)
            Image.fromarray(colour_coded(gray, ch)).save(
                tmp_path / "site" / "images" / folder / f"{rest}_{ch}.jpg", quality=90
            )
    s = Server(tmp_path / "site")
    yield s
    s.close()


def _labels(tmp_path, ids=IDS) -> str:
    path = tmp_path / "hpav18.csv"
    path.write_text("Id,Target\n" + "".join(f"{i},{k % 5} 25\n" for k, i in enumerate(ids)))
    return str(path)


def test_url_layout():
    assert image_url("http://x/images/", "10580_1610_C1_1", "red") == (
        "http://x/images/10580/1610_C1_1_red.jpg"
    )
    with pytest.raises(DataError, match="is not <antibody>_<plate>"):
        image_url("http://x", "nounderscore", "red")


def test_download_retries_verifies_and_resumes(server, tmp_path):
    out = tmp_path / "hpav18"
    first = "/images/10580/1610_C1_1_red.jpg"
    server.flaky.add(first)  # a 503, then the file
    server.truncate.add("/images/1234/99_A1_3_blue.jpg")  # half the body, then the file
    failures = download(_labels(tmp_path), str(out), server.url, workers=4, backoff_s=0.01)
    assert failures == []
    files = sorted(p.name for p in (out / "train").iterdir())
    assert files == sorted(f"{i}_{c}.jpg" for i in IDS for c in CHANNELS)
    site = tmp_path / "site" / "images"
    for i in IDS:
        folder, _, rest = i.partition("_")
        for c in CHANNELS:
            assert (out / "train" / f"{i}_{c}.jpg").read_bytes() == (
                site / folder / f"{rest}_{c}.jpg"
            ).read_bytes()
    assert server.requests.count(first) == 2
    assert pd.read_csv(out / "train.csv")["Id"].tolist() == IDS
    # Resuming: whole files are kept, a damaged one is fetched again, nothing else.
    server.requests.clear()
    damaged = out / "train" / f"{IDS[1]}_green.jpg"
    damaged.write_bytes(damaged.read_bytes()[:100])
    assert download(_labels(tmp_path), str(out), server.url, workers=4) == []
    assert server.requests == ["/images/10580/1610_C1_2_green.jpg"]


def test_a_missing_file_is_named_and_the_rest_kept(server, tmp_path, capsys):
    from protloc import process

    out = tmp_path / "hpav18"
    (tmp_path / "site" / "images" / "1234" / "99_A1_3_yellow.jpg").unlink()
    rc = process.run(
        main,
        ["--labels", _labels(tmp_path), "--out", str(out), "--base-url", server.url,
         "--retries", "1"],
    )  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "1 file(s) failed" in err and "99_A1_3_yellow.jpg: HTTP 404" in err
    assert len(list((out / "train").iterdir())) == 4 * len(IDS) - 1


@pytest.mark.slow
def test_external_data_trains_but_is_never_held_out(tiny_data, server, tmp_path):
    """split with external: the manifest's source column, validation on the data root's samples
    only; an Id in both is refused; a bad external setting is refused naming it."""
    ext = tmp_path / "hpav18"
    assert download(_labels(tmp_path), str(ext), server.url, workers=4) == []
    out = tmp_path / "split"
    stats = run_split(
        SplitConfig(external=str(ext), rare_below=0), str(tiny_data / "train.csv"), out=str(out)
    )
    m = read_manifest(str(out / "manifest.parquet"))
    external = m.frame[m.frame["source"] == str(ext)]
    assert sorted(external["id"]) == sorted(IDS) and (external["fold"] == "train").all()
    assert (external["weight"] > 0).all() and stats["samples"]["external"] == len(IDS)
    assert list(m.external) == [str(ext)] and set(m.external[str(ext)]) == set(IDS)
    kfold = run_split(
        SplitConfig(external=str(ext), rare_below=0, folds=2),
        str(tiny_data / "train.csv"),
        out=str(tmp_path / "k"),
    )
    mk = read_manifest(str(tmp_path / "k" / "manifest.parquet"))
    assert (mk.frame.loc[mk.frame["source"] != "", "fold_index"] == -1).all()
    assert len(mk.held_out()) == len(m.frame) - len(IDS) and kfold["folds"] == 2
    # an Id of the data root in the external labels is refused, naming both files
    first = pd.read_csv(tiny_data / "train.csv")["Id"].iloc[0]
    (ext / "train.csv").write_text(f"Id,Target\n{first},1\n")
    with pytest.raises(DataError, match=rf"Id '{first}' is also in .*train.csv"):
        run_split(
            SplitConfig(external=str(ext)), str(tiny_data / "train.csv"), out=str(tmp_path / "x")
        )
    with pytest.raises(ConfigError, match="external has an empty entry"):
        SplitConfig(external=f"{ext},,")


@pytest.mark.slow
def test_kfp_local_run_with_external_data(tiny_data, server, tmp_path):
    """kfp.local with an external data root of HPAv18-format JPEGs: prepare stores its samples,
    the cycle trains on them with the data root's, the submission is whole."""
    from protloc.data.store import open_store

    ext = tmp_path / "hpav18"
    assert download(_labels(tmp_path), str(ext), server.url, workers=4) == []
    base = {"data_root": str(tiny_data), "rare_below": 0, "workers": 0, "tta": 1,
            "external": str(ext)}  # fmt: skip
    summary = pipeline.run_local([Cycle(80, 8, 1)], base, str(tmp_path / "root"))
    run = Path(summary["submission"]).parents[2]
    store = open_store(str(run / "prepare" / "out"))
    assert set(IDS) <= set(store.index["id"])
    metrics = json.loads((run / "train" / "out" / "metrics.json").read_text())
    manifest = read_manifest(str(run / "split" / "out" / "manifest.parquet"))
    train = manifest.fold("train")
    assert metrics["train_samples"] == len(train) and set(IDS) <= set(train["id"])
    assert (store.index.set_index("id").loc[IDS, "split"] == "train").all()
    sub = pd.read_csv(summary["submission"], dtype=str)
    assert len(sub) == len(pd.read_csv(tiny_data / "sample_submission.csv"))


def test_a_trickling_server_times_out_and_sigterm_ends_the_download(server, tmp_path):
    """Item: a server trickling 1 byte every 0.5 s held the downloader for 704 s, through
    SIGTERM (no read timeout, threads waited for); a Content-Length 'abc' was a traceback."""
    folder, _, rest = IDS[0].partition("_")
    slow = f"/images/{folder}/{rest}_red.jpg"
    server.trickle.add(slow)
    server.bad_length.add(f"/images/{folder}/{rest}_blue.jpg")
    labels = _labels(tmp_path, ids=IDS[:1])
    cmd = [sys.executable, "-m", "protloc.data.hpav18", "--labels", labels, "--retries", "0"]
    cmd += ["--base-url", server.url, "--file-timeout", "2"]
    t0 = time.monotonic()
    proc = subprocess.run([*cmd, "--out", str(tmp_path / "a")], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=120)  # fmt: skip
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "TimeoutError: not whole after 2 s" in proc.stderr
    assert "Content-Length 'abc' is not a byte count" in proc.stderr
    assert (tmp_path / "a" / "train" / f"{IDS[0]}_green.jpg").is_file()  # the others kept

    # SIGTERM while a file trickles in (a long file timeout): the process ends at once.
    run = subprocess.Popen([*cmd[:-1], "600", "--out", str(tmp_path / "b")], cwd=ROOT,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while server.requests.count(slow) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the slow file's second request: b's
    time.sleep(0.5)
    run.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    err = run.communicate(timeout=30)[1]
    assert time.monotonic() - t0 < 5, err[-2000:]
    assert run.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err[-2000:]


def test_a_store_of_changed_external_images_is_refused(tiny_data, server, tmp_path):
    """Item: an external sample blanked after prepare went unnoticed (only the data root's
    fingerprint was checked) and train from the store trained on the old pixels."""
    from protloc.config import PrepareConfig
    from protloc.steps import prepare_step
    from protloc.steps.data import open_checked_store

    ext = tmp_path / "hpav18"
    assert download(_labels(tmp_path), str(ext), server.url, workers=4) == []
    split = tmp_path / "split"
    run_split(SplitConfig(external=str(ext), rare_below=0), str(tiny_data / "train.csv"),
              out=str(split))  # fmt: skip
    (split / "timing.json").write_text('{"step": "split", "seconds": 0, "code_version": "t"}')
    store = tmp_path / "store"
    prepare_step(PrepareConfig(store_size=80), data_root=str(tiny_data), split=str(split),
                 out=str(store))  # fmt: skip
    data = DataListing(str(tiny_data))
    assert open_checked_store(str(store), data) is not None  # unchanged: accepted
    blank = ext / "train" / f"{IDS[0]}_green.jpg"
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(blank)
    with pytest.raises(ArtifactError, match=rf"external root {ext} holds now .*run prepare again"):
        open_checked_store(str(store), DataListing(str(tiny_data)))
