"""Where tasks run on a Kubernetes cluster: images, GPU placement, secrets, retries.

kfp.local ignores all of this (with a warning), so the pipeline applies it only when compiling or
submitting for a cluster.
"""

from __future__ import annotations

import os

from protloc import __version__

IMAGE_REPO = os.environ.get("PROTLOC_IMAGE", "ghcr.io/protloc/protloc")
S3_SECRET = "protloc-s3"  # k8s/s3-secret.example.yaml
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
GPU_NODE_SELECTOR = ("nvidia.com/gpu.present", "true")


def images(version: str = __version__) -> dict[str, str]:
    """Immutable image tags: one per package version (a new version means a new tag)."""
    return {"cpu": f"{IMAGE_REPO}:{version}-cpu", "gpu": f"{IMAGE_REPO}:{version}-gpu"}


def on_gpu(task, cpu: str = "8", memory: str = "48G") -> None:
    """One GPU, a GPU node, /dev/shm, node-local scratch for the image cache, retries."""
    from kfp import kubernetes

    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    task.set_cpu_request(cpu).set_memory_request(memory)
    kubernetes.add_node_selector(task, *GPU_NODE_SELECTOR)
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    # Data loader workers share batches through /dev/shm; the default 64 MB is far too small.
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="16Gi"
    )
    # The image cache (decoded uint8 images, up to ~33 GB at 512 px) lives on node-local scratch.
    kubernetes.empty_dir_mount(
        task, volume_name="scratch", mount_path="/scratch", size_limit="200Gi"
    )
    task.set_env_variable("PROTLOC_CACHE_DIR", "/scratch/image-cache")
    # Preempted or failed pods are retried; the train step resumes from its last epoch.
    task.set_retry(
        num_retries=3, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="900s"
    )


def on_cpu(task, cpu: str = "2", memory: str = "4G") -> None:
    """A CPU node; retries for transient failures."""
    task.set_cpu_request(cpu).set_memory_request(memory)
    task.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)


def with_s3_secret(task) -> None:
    """S3 credentials from the ``protloc-s3`` Secret; the container runs as user 1000."""
    from kfp import kubernetes

    kubernetes.use_secret_as_env(
        task, secret_name=S3_SECRET, secret_key_to_env={k: k for k in S3_SECRET_KEYS}
    )
    # The images run as the unprivileged user 1000 (docker/Dockerfile); enforce it in the pod too.
    kubernetes.set_security_context(task, run_as_user=1000, run_as_group=1000, run_as_non_root=True)


def place(task, gpu: bool, cluster: bool) -> None:
    """Caching on for every task; on a cluster, its node, resources, secret and retries."""
    task.set_caching_options(enable_caching=True)
    if cluster:
        (on_gpu if gpu else on_cpu)(task)
        with_s3_secret(task)
