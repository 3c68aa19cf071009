"""``pipeline.py submit`` against a stand-in KFP API on 127.0.0.1 (tests/fake_kfp.py): a real
HTTP round trip through kfp.Client for the login, the backend's version, the upload of the
pipeline and its versions, caching and the run's name."""

from __future__ import annotations

import json

import pytest

import pipeline
from protloc.version import code_version
from tests.fake_kfp import FakeKfp

DATA = "s3://a-bucket-this-machine-cannot-read/hpa"  # never read by submit


@pytest.fixture
def kfp_api():
    fake = FakeKfp()
    yield fake
    fake.close()


def _submit(fake: FakeKfp, *flags: str) -> int:
    return pipeline.main(["submit", "--host", fake.url, "--data-root", DATA, *flags])


def test_upload_twice_one_pipeline_two_versions_and_a_reused_one(kfp_api):
    assert _submit(kfp_api, "--upload", "--schedule", "96:8:1") == 0
    assert _submit(kfp_api, "--upload", "--schedule", "96:8:1,128:8:1") == 0
    assert _submit(kfp_api, "--upload", "--schedule", "96:8:1") == 0  # the first one again
    assert [p["display_name"] for p in kfp_api.pipelines.values()] == ["protloc"]
    (versions,) = kfp_api.versions.values()
    named = [v["display_name"] for v in versions[1:]]  # [0]: the pipeline's own first version
    assert len(named) == 2 and all(n.startswith(code_version() + "-") for n in named)
    runs = kfp_api.runs
    assert len(runs) == 3
    ids = [r["pipeline_version_reference"]["pipeline_version_id"] for r in runs]
    assert ids[0] == ids[2] != ids[1]
    assert all(r["runtime_config"]["parameters"]["alpha"] == "0.1" for r in runs)


def test_login_token_and_cookies_reach_the_api(kfp_api):
    assert _submit(kfp_api, "--existing-token", "t0ken-123", "--schedule", "96:8:1") == 0
    assert {r["headers"].get("authorization") for r in kfp_api.requests} == {"Bearer t0ken-123"}
    kfp_api.requests.clear()
    assert _submit(kfp_api, "--cookies", "authservice_session=abc", "--schedule", "96:8:1") == 0
    assert {r["headers"].get("cookie") for r in kfp_api.requests} == {"authservice_session=abc"}


def test_no_cache_and_run_name(kfp_api):
    assert _submit(kfp_api, "--no-cache", "--run-name", "nightly-7", "--schedule", "96:8:1") == 0
    (run,) = kfp_api.runs
    assert run["display_name"] == "nightly-7"
    tasks = run["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in tasks.values())
    assert _submit(kfp_api, "--schedule", "96:8:1") == 0  # caching on by default
    tasks = kfp_api.runs[1]["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert tasks["split"]["cachingOptions"]["enableCache"] is True
    assert not tasks["fingerprint"].get("cachingOptions", {}).get("enableCache")


def test_an_older_backend_is_refused_in_one_line(capsys):
    fake = FakeKfp(tag_name="2.14.0")
    try:
        assert _submit(fake, "--schedule", "96:8:1") == 2
    finally:
        fake.close()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        "error: the KFP backend is 2.14.0; protloc's pipeline needs 2.17.0 or newer (the pods' "
        "securityContext)"
    )
    assert fake.runs == []


def test_a_password_in_the_host_is_never_printed(kfp_api, capsys):
    host = kfp_api.url.replace("http://", "http://admin:s3cr3t@") + "?token=abc"
    rc = pipeline.main(["submit", "--host", host, "--data-root", DATA, "--schedule", "96:8:1"])
    out = capsys.readouterr()
    assert "s3cr3t" not in out.out + out.err and "token=abc" not in out.out + out.err
    assert rc in (0, 2)
    json.dumps(kfp_api.runs)  # what reached the server is plain JSON
