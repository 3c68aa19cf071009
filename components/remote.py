"""Starting a run on a Kubeflow Pipelines backend: login, the backend's version, upload.

``pipeline.py submit`` compiles the DAG to a YAML file and hands it here. kfp.Client does the
HTTP: it logs in the way it is given (a bearer token, the cookies of a Kubeflow login, or a
Kubernetes service account's token file, as KFP's own clients do), and protloc checks the
backend is recent enough for what the YAML uses (the pods' securityContext, honoured from KFP
2.17). With ``upload``, the pipeline and a version named by the code version and the YAML's
hash are stored on the server (reused when already there), and the run starts from that
version; else the YAML is sent with the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from protloc.errors import ConfigError, ProtlocError
from protloc.redact import redact_url
from protloc.version import code_version

log = logging.getLogger("protloc.pipeline")

PIPELINE_NAME = "protloc"
MIN_BACKEND = (2, 17, 0)  # the pods' securityContext (kfp-kubernetes) needs KFP 2.17


@dataclass(frozen=True)
class Remote:
    """Where and how to start a run (``pipeline.py submit``'s flags)."""

    host: str
    experiment: str = PIPELINE_NAME
    namespace: str = ""
    service_account: str = ""
    pipeline_root: str = ""
    existing_token: str = ""
    cookies: str = ""
    sa_token_path: str = ""
    upload: bool = False
    cache: bool = True
    run_name: str = ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.host)
        if parts.query or parts.fragment:  # the client appends its API paths after the host
            raise ConfigError(
                f"--host {redact_url(self.host)}: a query string or fragment is not part of a "
                "KFP address; pass a token with --existing-token or --sa-token-path"
            )


def client(remote: Remote) -> Any:
    """A kfp.Client logged in as ``remote`` says; an unreachable host is one line."""
    import kfp

    credentials = None
    if remote.sa_token_path:
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        if not Path(remote.sa_token_path).is_file():
            raise ConfigError(f"--sa-token-path {remote.sa_token_path}: no such file")
        credentials = ServiceAccountTokenVolumeCredentials(path=remote.sa_token_path)
    try:
        return kfp.Client(
            host=remote.host,
            namespace=remote.namespace or "kubeflow",
            existing_token=remote.existing_token or None,
            cookies=remote.cookies or None,
            credentials=credentials,
        )
    except Exception as exc:  # urllib3/requests/kfp errors all mean: no KFP API there
        raise ProtlocError(
            f"--host {redact_url(remote.host)}: cannot reach a KFP API ({type(exc).__name__})"
        ) from None


def backend_version(kfp_client: Any, host: str) -> str:
    """The backend's release (``tag_name`` of its healthz answer; '' when it does not say).
    The generated client's model keeps only two of the answer's fields, so the body is read."""
    try:
        raw = kfp_client._healthz_api.healthz_service_get_healthz(_preload_content=False)
        return str(json.loads(raw.data).get("tag_name", "") or "")
    except Exception as exc:  # urllib3/kfp errors all mean: no KFP API there
        raise ProtlocError(
            f"--host {redact_url(host)}: cannot reach a KFP API ({type(exc).__name__})"
        ) from None


def check_backend(version: str) -> None:
    """Refuse a backend older than :data:`MIN_BACKEND` (an unknown version is let through)."""
    parts = version.lstrip("v").split(".")
    try:
        found = tuple(int(p.split("-")[0]) for p in parts[:3])
    except ValueError:
        log.warning("the KFP backend reports version %r: cannot compare it", version)
        return
    if len(found) == 3 and found < MIN_BACKEND:
        want = ".".join(map(str, MIN_BACKEND))
        raise ProtlocError(
            f"the KFP backend is {version}; protloc's pipeline needs {want} or newer (the pods' "
            "securityContext)"
        )


def version_name(yaml_path: str) -> str:
    """A pipeline version's name: the code version and the YAML's hash (the schedule, folds
    and placement it was compiled with), so one compile is one version."""
    digest = hashlib.sha256(Path(yaml_path).read_bytes()).hexdigest()[:8]
    return f"{code_version()}-{digest}"


def upload(kfp_client: Any, yaml_path: str, namespace: str) -> tuple[str, str]:
    """(pipeline id, version id) of this YAML on the server, uploaded when not there yet."""
    pipeline_id = kfp_client.get_pipeline_id(PIPELINE_NAME)
    name = version_name(yaml_path)
    if pipeline_id is None:
        pipeline = kfp_client.upload_pipeline(
            yaml_path, pipeline_name=PIPELINE_NAME, namespace=namespace or None
        )
        pipeline_id = pipeline.pipeline_id
        log.info("uploaded pipeline %s (%s)", PIPELINE_NAME, pipeline_id)
    versions = kfp_client.list_pipeline_versions(pipeline_id, page_size=100).pipeline_versions
    for v in versions or []:
        if v.display_name == name:
            log.info("pipeline version %s is already there", name)
            return pipeline_id, v.pipeline_version_id
    version = kfp_client.upload_pipeline_version(
        yaml_path, pipeline_version_name=name, pipeline_id=pipeline_id
    )
    log.info("uploaded pipeline version %s", name)
    return pipeline_id, version.pipeline_version_id


def start(remote: Remote, yaml_path: str, arguments: dict[str, Any]) -> str:
    """Start a run of the compiled ``yaml_path`` with ``arguments``; returns its id."""
    kfp_client = client(remote)
    check_backend(backend_version(kfp_client, remote.host))
    run_name = remote.run_name or f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}"
    # Caching as compiled into the YAML (``remote.cache``): every task but the fingerprint,
    # or none; a run-level setting would turn the fingerprint's cache on too.
    common = {
        "params": arguments,
        "pipeline_root": remote.pipeline_root or None,
        "enable_caching": None,
        "service_account": remote.service_account or None,
    }
    experiment = kfp_client.create_experiment(remote.experiment, namespace=remote.namespace or None)
    if remote.upload:
        pipeline_id, version_id = upload(kfp_client, yaml_path, remote.namespace)
        run = kfp_client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=run_name,
            pipeline_id=pipeline_id,
            version_id=version_id,
            **common,
        )
    else:
        run = kfp_client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=run_name,
            pipeline_package_path=yaml_path,
            **common,
        )
    return run.run_id
