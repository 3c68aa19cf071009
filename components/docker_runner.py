"""kfp.local's DockerRunner set up for protloc: each task in the project's image, as a cluster
runs it (the image's uid 1000, the image cache on a mounted folder, GPUs where the engine has
the NVIDIA runtime).

kfp.local mounts only the pipeline root into the containers (at the same path), so the data root
is mounted read-only at its own path, and the image cache (the image's ``/scratch/image-cache``,
an emptyDir on a cluster) is ``{root}/.image-cache`` so that infer reuses the last cycle's cache.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from components import cluster
from protloc import storage
from protloc.cpus import TASKS_ENV
from protloc.errors import ConfigError

log = logging.getLogger("protloc.pipeline")

UID = 1000  # the images' user (containers/Dockerfile) and the pods' runAsUser
CACHE_IN_IMAGE = "/scratch/image-cache"
# S3 settings a task needs when the data root is on S3 (as docker compose passes them).
S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")


def docker_runner(root: Path, data_root: str) -> Any:
    """A ``kfp.local.DockerRunner`` for a run under ``root`` reading ``data_root``; refuses at
    once (one line) when no engine answers or an image is missing."""
    if storage.is_remote(data_root) and not storage.is_s3(data_root):
        raise ConfigError(
            f"--runner docker passes only S3 credentials (AWS_*) into the containers: "
            f"{data_root} needs the subprocess runner or docker compose"
        )
    try:
        import docker
        from docker.types import DeviceRequest, Mount
    except ImportError:
        raise ConfigError(
            "--runner docker needs the Docker SDK: pip install 'protloc[docker]'"
        ) from None
    from kfp import local

    try:
        client = docker.from_env()
        info = client.info()
    except docker.errors.DockerException as exc:
        raise ConfigError(f"--runner docker: no Docker engine answers ({exc})") from None
    try:
        for tag in cluster.images().values():
            try:
                client.images.get(tag)
            except docker.errors.ImageNotFound:
                raise ConfigError(
                    f"--runner docker: image {tag} is not in this engine: build it from this "
                    f"tree with `make images` (kfp.local would try to pull it)"
                ) from None
    finally:
        client.close()
    cache = root / ".image-cache"
    cache.mkdir(exist_ok=True)
    for folder in (root, cache):
        _writable_by_image_user(folder)
    mounts = [Mount(target=CACHE_IN_IMAGE, source=str(cache), type="bind")]
    if not storage.is_remote(data_root):
        data = str(Path(data_root).resolve())
        mounts.append(Mount(target=data, source=data, type="bind", read_only=True))
    args: dict[str, Any] = {
        "mounts": mounts,
        "user": f"{UID}:{UID}",
        "shm_size": "2g",  # data loader workers share batches through /dev/shm
        "environment": {k: os.environ[k] for k in (*S3_ENV, TASKS_ENV) if k in os.environ},
    }
    if "nvidia" in info.get("Runtimes", {}):
        args["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        log.info("docker: the engine has the NVIDIA runtime: tasks get the GPUs")
    else:
        log.info("docker: no NVIDIA runtime in this engine: train and infer run on the CPU")
    return local.DockerRunner(**args)


def _writable_by_image_user(folder: Path) -> None:
    """The containers run as uid 1000: a root caller hands the folder over; anyone else is told
    what to do if uid 1000 cannot write it."""
    st = folder.stat()
    if st.st_uid == UID or st.st_mode & 0o002:
        return
    if os.geteuid() == 0:
        os.chown(folder, UID, UID)
        log.info("docker: %s now belongs to uid %d (the images' user)", folder, UID)
        return
    raise ConfigError(
        f"--root {folder}: the containers run as uid {UID} and cannot write it; "
        f"`chown {UID} {folder}` or `chmod o+w {folder}`"
    )
