"""kfp.local's DockerRunner set up for protloc: each task in the project's image, as a cluster
runs it (the image's uid 1000, the image cache on a mounted folder, GPUs where the engine has
the NVIDIA runtime).

kfp.local mounts only the pipeline root into the containers (at the same path), so the data root
is mounted read-only at its own path, and the image cache (the image's ``/scratch/image-cache``,
an emptyDir on a cluster) is ``{root}/.image-cache`` so that infer reuses the last cycle's cache.

Every container of a run carries the label ``org.protloc.run`` (host, pid and a random part):
when ``pipeline.py local`` ends early (SIGTERM, Ctrl-C, a failed task), :func:`stop_run_containers`
stops the run's containers still running (SIGTERM to every process in each, which a task
handles like Ctrl-C, then ``docker stop``'s SIGKILL after a grace period), as the subprocess
runner's task processes are ended.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
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
RUN_LABEL = "org.protloc.run"
STOP_GRACE_S = 30  # docker stop: SIGTERM, then SIGKILL after this long


def run_label() -> str:
    """A value of :data:`RUN_LABEL` no other run on any host shares."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def docker_runner(root: Path, data_root: str, label: str) -> Any:
    """A ``kfp.local.DockerRunner`` for a run under ``root`` reading ``data_root``, each
    container labelled ``label``; refuses at once (one line) when no engine answers or an image
    is missing."""
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
        "labels": {RUN_LABEL: label},
    }
    if "nvidia" in info.get("Runtimes", {}):
        args["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        log.info("docker: the engine has the NVIDIA runtime: tasks get the GPUs")
    else:
        log.info("docker: no NVIDIA runtime in this engine: train and infer run on the CPU")
    return local.DockerRunner(**args)


def stop_run_containers(label: str) -> int:
    """Stop the containers labelled ``label`` that still run; returns how many. Failures are
    logged, not raised: this runs while the run ends."""
    import docker

    stopped = 0
    try:
        client = docker.from_env()
        try:
            for container in client.containers.list(filters={"label": f"{RUN_LABEL}={label}"}):
                log.warning("docker: stopping task container %s", container.name)
                try:
                    _stop(container)
                    stopped += 1
                except docker.errors.NotFound:  # it ended (and was removed) meanwhile
                    continue
        finally:
            client.close()
    except docker.errors.DockerException as exc:
        log.warning("docker: could not stop the run's containers (%s)", exc)
    return stopped


def _stop(container: Any) -> None:
    """SIGTERM to every process of the task's container, then ``docker stop``'s wait. kfp.local
    runs each task as ``sh -c '... python3 ...'``: the shell is the container's PID 1, which
    ignores SIGTERM and forwards nothing, so ``docker stop`` alone would SIGKILL the task after
    the grace period, with no cleanup; ``kill -TERM -1`` inside the container reaches the task's
    Python process, which ends like Ctrl-C (temporary files, lock), and the shell ends with it."""
    container.exec_run(["sh", "-c", "kill -TERM -1"])
    container.stop(timeout=STOP_GRACE_S)


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
