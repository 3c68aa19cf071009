import hashlib
import logging
import os
import time
from pathlib import Path

import boto3
import pytest

from protloc import storage
from protloc.errors import ConfigError, StorageError
from tests.conftest import free_port


def test_local_roundtrip_and_listing(tmp_path):
    uri = str(tmp_path / "a" / "b" / "x.bin")
    storage.write_bytes(uri, b"hello")
    assert storage.read_bytes(uri) == b"hello"
    assert storage.exists(uri) and not storage.exists(uri + ".nope")
    storage.write_text(str(tmp_path / "a" / "y.txt"), "t")
    assert storage.list_files(str(tmp_path / "a")) == sorted([uri, str(tmp_path / "a" / "y.txt")])
    assert oct(os.stat(uri).st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_local_write_is_atomic_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), storage._atomic_local_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temp file left behind


def test_local_missing_file_names_it(tmp_path):
    with pytest.raises(StorageError, match=r"nothere\.csv: no such file"):
        storage.read_bytes(str(tmp_path / "nothere.csv"))


def test_s3_roundtrip_exists_list(bucket):
    storage.write_bytes(f"{bucket}/d/x.txt", b"abc")
    storage.write_text(f"{bucket}/d/sub/y.txt", "xyz")
    assert storage.read_bytes(f"{bucket}/d/x.txt") == b"abc"
    assert storage.exists(f"{bucket}/d/x.txt")
    assert not storage.exists(f"{bucket}/d/nope.txt")
    assert storage.list_files(f"{bucket}/d") == [f"{bucket}/d/sub/y.txt", f"{bucket}/d/x.txt"]


def test_s3_multipart_50mb_roundtrip(bucket, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(50 * 1024 * 1024))
    uri = f"{bucket}/big/big.bin"
    storage.upload_file(src, uri)
    b, _, key = uri.removeprefix("s3://").partition("/")
    etag = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).head_object(
        Bucket=b, Key=key
    )["ETag"]
    assert etag.endswith('-7"')  # a multipart upload's ETag is "<md5>-<parts>": 8 MB parts
    assert (
        storage.listing(f"{bucket}/big")["big.bin"] == f"{50 * 1024 * 1024}:{etag.strip(chr(34))}"
    )
    out = storage.download_file(uri, tmp_path / "back.bin")
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


@pytest.mark.slow
def test_s3_folder_of_200_files(bucket, tmp_path):
    src = tmp_path / "src"
    for i in range(200):
        (src / f"g{i % 7}").mkdir(parents=True, exist_ok=True)
        (src / f"g{i % 7}" / f"f{i}.txt").write_text(f"file {i}")
    assert storage.upload_dir(src, f"{bucket}/folder") == 200
    assert len(storage.list_files(f"{bucket}/folder")) == 200
    assert storage.download_dir(f"{bucket}/folder", tmp_path / "dst") == 200
    for p in src.rglob("*.txt"):
        assert (tmp_path / "dst" / p.relative_to(src)).read_text() == p.read_text()


def test_s3_missing_object_and_bucket_name_the_uri(bucket):
    with pytest.raises(StorageError, match=r"s3://.*/nope\.bin: no such object"):
        storage.read_bytes(f"{bucket}/nope.bin")
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-x/k: bucket does not exist"):
        storage.read_bytes("s3://no-such-bucket-x/k")
    with pytest.raises(StorageError, match="bucket does not exist"):
        storage.write_bytes("s3://no-such-bucket-x/k", b"1")


def test_s3_missing_credentials_is_one_clear_error(s3_env, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match=r"s3://b/k: no S3 credentials"):
        storage.read_bytes("s3://b/k")


def test_join_and_a_uri_without_a_bucket():
    assert storage.join("s3://b/p/", "train", "x.png") == "s3://b/p/train/x.png"
    assert storage.join("/tmp/a", "b") == str(Path("/tmp/a/b"))
    for scheme in ("s3", "gs", "az"):
        with pytest.raises(StorageError, match=rf"^{scheme}:///key: not a valid {scheme}:// URI"):
            storage.read_bytes(f"{scheme}:///key")


# ----------------------------------------------------------------------------- every object store


def test_every_store_roundtrip_listing_identity(any_bucket, tmp_path):
    """One API on S3 (moto), GCS (gcp-storage-emulator) and Azure Blob (Azurite), each a real
    HTTP server on 127.0.0.1: writes, reads, listings with an identity that changes when the
    object is rewritten, files up and down, deletes."""
    base = f"{any_bucket}/run/step"
    storage.write_bytes(f"{base}/a.bin", b"abc")
    storage.write_json(f"{base}/sub/b.json", {"x": 1})
    assert storage.read_bytes(f"{base}/a.bin") == b"abc"
    assert storage.read_json(f"{base}/sub/b.json") == {"x": 1}
    assert storage.exists(f"{base}/a.bin") and not storage.exists(f"{base}/nope")
    assert storage.list_files(base) == [f"{base}/a.bin", f"{base}/sub/b.json"]
    first = storage.listing(base)
    assert list(first) == ["a.bin"] and first["a.bin"].startswith("3:")
    storage.write_bytes(f"{base}/a.bin", b"xyz")  # same size, new content
    assert storage.listing(base)["a.bin"] != first["a.bin"]
    src = tmp_path / "f.bin"
    src.write_bytes(b"0123456789" * 1000)
    storage.upload_file(src, f"{base}/up/f.bin")
    got = storage.download_file(f"{base}/up/f.bin", tmp_path / "down" / "f.bin")
    assert got.read_bytes() == src.read_bytes()
    assert storage.check_writable_folder(f"{base}/new") is False
    storage.delete(f"{base}/a.bin")
    assert not storage.exists(f"{base}/a.bin")
    assert storage.delete_tree(base) == 2 and storage.list_files(base) == []
    assert storage.listing(f"{any_bucket}/none") == {}


def test_every_store_names_a_missing_object_and_bucket(any_bucket):
    scheme = any_bucket.split("://")[0]
    with pytest.raises(StorageError, match=rf"{any_bucket}/nope.bin: no such object"):
        storage.read_bytes(f"{any_bucket}/nope.bin")
    with pytest.raises(StorageError, match=rf"{scheme}://no-such-bucket-x/k: .*(bucket|no such)"):
        storage.read_bytes(f"{scheme}://no-such-bucket-x/k")
    with pytest.raises(StorageError, match="does not exist"):
        storage.check_writable_folder(f"{scheme}://no-such-bucket-x/out")


@pytest.mark.parametrize("scheme", ["s3", "gs", "az"])
def test_a_store_that_does_not_answer_is_retried_then_named(scheme, monkeypatch, caplog, tmp_path):
    """An endpoint nobody listens on: retried as PROTLOC_STORAGE_ATTEMPTS says (each call one
    attempt in s3fs, gcsfs and adlfs: gcsfs alone would wait about 31 s over 6), then one error
    naming the URI and the endpoint (S3's without the password in its URL)."""
    port = free_port()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://user:PASSWORD@127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{port}/a;",
    )
    monkeypatch.setenv("PROTLOC_STORAGE_ATTEMPTS", "2")
    monkeypatch.setenv("PROTLOC_STORAGE_BACKOFF_S", "0.01")
    start = time.monotonic()
    with pytest.raises(StorageError) as err:
        storage.read_bytes(f"{scheme}://b/data/train.csv")
    # a refused connection fails at once; the libraries' own retries would wait 31 s (gcsfs)
    # or 57 s (the Azure SDK) before protloc's second attempt
    assert time.monotonic() - start < 25
    msg = str(err.value)
    assert f"{scheme}://b/data/train.csv" in msg and f"127.0.0.1:{port}" in msg
    assert "PASSWORD" not in msg + caplog.text
    assert msg.endswith("after 2 attempts to read"), msg
    assert [r.message.split("; ")[0].rsplit(" ", 1)[1] for r in caplog.records
            if "retrying" in r.message] == ["1/2"]  # fmt: skip
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # a download: every way a library copies a file makes one attempt too
    start = time.monotonic()
    with pytest.raises(StorageError, match=rf"{scheme}://b/data/x.png: .*127.0.0.1:{port}"):
        storage.download_file(f"{scheme}://b/data/x.png", tmp_path / "x.png")
    assert time.monotonic() - start < 25 and not (tmp_path / "x.png").exists()
    # a step's output folder: the endpoint named, never "bucket does not exist"
    with pytest.raises(StorageError, match=rf"{scheme}://b/run/out: .*127.0.0.1:{port}") as err:
        storage.check_writable_folder(f"{scheme}://b/run/out")
    assert "does not exist" not in str(err.value)
    # an unanswered check is an error, never "no such object"
    with pytest.raises(
        StorageError, match=rf"{scheme}://b/run/split/timing.json: .*127.0.0.1:{port}"
    ):
        storage.exists(f"{scheme}://b/run/split/timing.json")


def test_a_store_without_credentials_is_one_line_naming_the_uri(monkeypatch):
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StorageError, match=r"^az://c/k: cannot connect to Azure Blob Storage: "):
        storage.read_bytes("az://c/k")


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "21"])
def test_retry_settings_are_checked(value, monkeypatch, tmp_path):
    monkeypatch.setenv("PROTLOC_STORAGE_ATTEMPTS", value)
    with pytest.raises(
        ConfigError,
        match=f"PROTLOC_STORAGE_ATTEMPTS must be a positive int up to 20, got '{value}'",
    ):
        storage.read_bytes("s3://b/k")


def test_the_s3_timeouts_are_checked_where_storage_reads_them(monkeypatch):
    monkeypatch.setenv("PROTLOC_S3_CONNECT_TIMEOUT_S", "abc")
    with pytest.raises(ConfigError, match="PROTLOC_S3_CONNECT_TIMEOUT_S must be a positive float"):
        storage.read_bytes("s3://b/k")


def test_a_local_failure_while_downloading_names_the_local_path(bucket, tmp_path):
    """The local side of a copy failing is said as such, never as the store's fault."""
    storage.write_bytes(f"{bucket}/d/x.bin", b"abc")
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(StorageError, match=rf"^{tmp_path}/file.*\(copying {bucket}/d/x.bin\)"):
        storage.download_file(f"{bucket}/d/x.bin", tmp_path / "file" / "x.bin")
