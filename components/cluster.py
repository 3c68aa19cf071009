"""Where tasks run on a Kubernetes cluster: images, GPU placement, secrets, retries.

kfp.local ignores all of this (with a warning), so the pipeline applies it only when compiling or
submitting for a cluster. What differs between clusters is a :class:`Placement`, fixed at compile
time (``pipeline.py compile|submit --gpu-node-selector --gpu-toleration --gpu-resource
--image-pull-secret``): GKE labels its GPU nodes ``cloud.google.com/gke-accelerator=<type>``,
the NVIDIA GPU operator ``nvidia.com/gpu.present=true``.

Retries: KFP's retry policy (IR ``retryPolicy``: count and backoff) cannot tell a bad-input exit
(status 2: retrying cannot help) from a preemption; Argo's ``retryStrategy.expression`` could,
but KFP v2 does not expose it. So a bad-input failure spends its retries (3 x backoff from 60 s on
GPU tasks) before the run fails; the error line is the same in every attempt's log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from protloc import __version__
from protloc.errors import ConfigError

IMAGE_REPO = os.environ.get("PROTLOC_IMAGE", "ghcr.io/protloc/protloc")
S3_SECRET = "protloc-s3"  # k8s/s3-secret.example.yaml
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
GPU_NODE_SELECTOR = ("nvidia.com/gpu.present", "true")
NAMESPACE = "kubeflow"  # KFP's default namespace (profile)
SERVICE_ACCOUNT = "protloc-runner"  # k8s/serviceaccount.yaml


@dataclass(frozen=True)
class Placement:
    """The cluster-specific, compile-time settings of GPU tasks."""

    gpu_node_selector: tuple[str, str] = GPU_NODE_SELECTOR
    gpu_toleration: str = "nvidia.com/gpu"  # taint key tolerated (operator Exists); "" = none
    gpu_resource: str = "nvidia.com/gpu"
    image_pull_secret: str = ""

    @classmethod
    def from_flags(
        cls, node_selector: str, toleration: str, resource: str, pull_secret: str
    ) -> Placement:
        """From ``KEY=VALUE`` and names, refusing malformed values with the flag's name."""
        key, sep, value = node_selector.partition("=")
        if not (sep and key.strip() and value.strip()):
            raise ConfigError(f"--gpu-node-selector must be KEY=VALUE, got {node_selector!r}")
        if not resource.strip():
            raise ConfigError("--gpu-resource is empty (e.g. nvidia.com/gpu)")
        return cls(
            (key.strip(), value.strip()), toleration.strip(), resource.strip(), pull_secret.strip()
        )


def images(version: str = __version__) -> dict[str, str]:
    """Immutable image tags: one per package version (a new version means a new tag)."""
    return {"cpu": f"{IMAGE_REPO}:{version}-cpu", "gpu": f"{IMAGE_REPO}:{version}-gpu"}


def on_gpu(task, placement: Placement, gpus: int = 1) -> None:
    """``gpus`` GPUs of one node with 8 CPUs, 48 GB and 16 GiB of /dev/shm each, node-local
    scratch for the image cache (one per pod: the ranks share it), retries."""
    from kfp import kubernetes

    task.set_accelerator_type(placement.gpu_resource).set_accelerator_limit(gpus)
    task.set_cpu_request(str(8 * gpus)).set_memory_request(f"{48 * gpus}G")
    kubernetes.add_node_selector(task, *placement.gpu_node_selector)
    if placement.gpu_toleration:
        kubernetes.add_toleration(
            task, key=placement.gpu_toleration, operator="Exists", effect="NoSchedule"
        )
    # Data loader workers share batches through /dev/shm; the default 64 MB is far too small.
    kubernetes.empty_dir_mount(
        task,
        volume_name="dshm",
        mount_path="/dev/shm",
        medium="Memory",
        size_limit=f"{16 * gpus}Gi",
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


def with_s3_secret(task, placement: Placement) -> None:
    """S3 credentials from the ``protloc-s3`` Secret; the container runs as user 1000."""
    from kfp import kubernetes

    kubernetes.use_secret_as_env(
        task, secret_name=S3_SECRET, secret_key_to_env={k: k for k in S3_SECRET_KEYS}
    )
    # The images run as the unprivileged user 1000 (docker/Dockerfile); enforce it in the pod too.
    kubernetes.set_security_context(task, run_as_user=1000, run_as_group=1000, run_as_non_root=True)
    if placement.image_pull_secret:
        kubernetes.set_image_pull_secrets(task, [placement.image_pull_secret])


def place(task, gpu: bool, placement: Placement | None, gpus: int = 1, cpus: int = 2) -> None:
    """Caching on for every task; on a cluster (``placement``), its node, resources (``gpus``
    per GPU task, ``cpus`` per CPU task), secrets and retries."""
    task.set_caching_options(enable_caching=True)
    if placement is not None:
        if gpu:
            on_gpu(task, placement, gpus)
        else:
            on_cpu(task, str(cpus), f"{2 * cpus}G")
        with_s3_secret(task, placement)
