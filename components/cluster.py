"""Where tasks run on a Kubernetes cluster: images, GPU placement, secrets, retries.

kfp.local ignores all of this (with a warning), so the pipeline applies it only when compiling or
submitting for a cluster. What differs between clusters is a :class:`Placement`, fixed at compile
time (``pipeline.py compile|submit --gpu-node-selector --gpu-toleration --gpu-resource
--image-pull-secret --image-registry --image``): GKE labels its GPU nodes
``cloud.google.com/gke-accelerator=<type>``, the NVIDIA GPU operator ``nvidia.com/gpu.present=true``.

Images are bound to the code: their tag is the code version every task checks
(``0.1.0-3f2a9c1b7d4e-gpu``: package version and source hash), so a rebuild of other code gets
another tag, a node never runs a stale image under a reused tag, and KFP's cache (keyed by the
image too) never serves another code's result. The check itself runs first in a cheap CPU task
in the GPU image (the ``fingerprint`` task), so an image of other code stops the run once,
before any GPU pod starts and without spending the GPU tasks' retries.

Retries: KFP's retry policy (IR ``retryPolicy``: count and backoff) cannot tell a bad-input exit
(status 2: retrying cannot help) from a preemption; Argo's ``retryStrategy.expression`` could,
but KFP v2 does not expose it. So a bad-input failure spends its retries (3 x backoff from 60 s on
GPU tasks) before the run fails; the error line is the same in every attempt's log.
"""

from __future__ import annotations

from dataclasses import dataclass

from components import k8s_names
from protloc.errors import ConfigError
from protloc.version import code_version

REGISTRY = "ghcr.io/protloc"
IMAGE_NAME = "protloc"
TARGETS = ("cpu", "gpu")  # containers/Dockerfile's targets
S3_SECRET = "protloc-s3"  # k8s/base/s3-secret.example.yaml
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
GPU_NODE_SELECTOR = ("nvidia.com/gpu.present", "true")
NAMESPACE = "protloc"  # k8s/base/kustomization.yaml
QUOTA_GPUS = 4  # requests.nvidia.com/gpu of k8s/base/resourcequota.yaml
SERVICE_ACCOUNT = "protloc-runner"  # k8s/base/serviceaccount.yaml
# Per GPU of a train or infer task: CPUs, memory (request = limit: the node's memory is the
# GPUs' to share, a GPU pod is never the first to be evicted) and /dev/shm for loader workers.
CPUS_PER_GPU = 8
MEMORY_PER_GPU_GB = 48
SHM_PER_GPU_GI = 16
# The image cache (decoded uint8 images, up to ~33 GB at 512 px; bench figures) on node scratch.
SCRATCH_GI = 200


@dataclass(frozen=True)
class Placement:
    """The cluster-specific, compile-time settings of GPU tasks."""

    gpu_node_selector: tuple[str, str] = GPU_NODE_SELECTOR
    gpu_toleration: str = "nvidia.com/gpu"  # taint key tolerated (operator Exists); "" = none
    gpu_resource: str = "nvidia.com/gpu"
    image_pull_secret: str = ""
    image: str = f"{REGISTRY}/{IMAGE_NAME}"  # the repository; the tag is the code's
    scratch_storage_class: str = ""  # "": an emptyDir; else a generic ephemeral volume

    @classmethod
    def from_flags(
        cls,
        node_selector: str,
        toleration: str,
        resource: str,
        pull_secret: str,
        registry: str = "",
        image: str = "",
        scratch_storage_class: str = "",
    ) -> Placement:
        """From ``KEY=VALUE`` and names, refusing what Kubernetes would refuse, by flag."""
        key, sep, value = (part.strip() for part in node_selector.partition("="))
        if not (sep and key and value):
            raise ConfigError(f"--gpu-node-selector must be KEY=VALUE, got {node_selector!r}")
        k8s_names.qualified_name("--gpu-node-selector key", key)
        k8s_names.label_value("--gpu-node-selector", value)
        if not resource.strip():
            raise ConfigError("--gpu-resource is empty (e.g. nvidia.com/gpu)")
        k8s_names.qualified_name("--gpu-resource", resource.strip(), need_prefix=True)
        if toleration.strip():
            k8s_names.qualified_name("--gpu-toleration", toleration.strip())
        if pull_secret.strip():
            k8s_names.dns_subdomain("--image-pull-secret", pull_secret.strip())
        if scratch_storage_class.strip():
            k8s_names.dns_subdomain("--scratch-storage-class", scratch_storage_class.strip())
        if registry and image:
            raise ConfigError("give --image-registry or --image, not both")
        if ":" in image.rsplit("/", 1)[-1] or "@" in image:
            raise ConfigError(
                f"--image {image!r} names a tag: give the repository only, the tag is the "
                "code's version"
            )
        repository = image or f"{(registry or REGISTRY).rstrip('/')}/{IMAGE_NAME}"
        return cls(
            (key, value),
            toleration.strip(),
            resource.strip(),
            pull_secret.strip(),
            repository,
            scratch_storage_class.strip(),
        )


def parallel_folds(gpus: int) -> int:
    """Fold chains that may train at once within the namespace's GPU quota (at least 1)."""
    return max(1, QUOTA_GPUS // gpus)


def code_tag(version: str | None = None) -> str:
    """The code version as an image tag ('+' is not allowed in one): 0.1.0-3f2a9c1b7d4e."""
    return (version or code_version()).replace("+", "-")


def images(repository: str = f"{REGISTRY}/{IMAGE_NAME}", version: str | None = None) -> dict:
    """The cpu and gpu images of this code: ``{repository}:{code tag}-{target}``."""
    return {t: f"{repository}:{code_tag(version)}-{t}" for t in TARGETS}


def on_gpu(task, placement: Placement, gpus: int = 1) -> None:
    """``gpus`` GPUs of one node with 8 CPUs, 48 GB (request = limit) and 16 GiB of /dev/shm
    each, node-local scratch for the image cache (one per pod: the ranks share it), retries."""
    from kfp import kubernetes

    task.set_accelerator_type(placement.gpu_resource).set_accelerator_limit(gpus)
    memory = f"{MEMORY_PER_GPU_GB * gpus}G"
    task.set_cpu_request(str(CPUS_PER_GPU * gpus)).set_cpu_limit(str(CPUS_PER_GPU * gpus))
    task.set_memory_request(memory).set_memory_limit(memory)
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
        size_limit=f"{SHM_PER_GPU_GI * gpus}Gi",
    )
    _scratch(task, placement)
    task.set_env_variable("PROTLOC_CACHE_DIR", "/scratch/image-cache")
    # Preempted or failed pods are retried; the train step resumes from its last epoch.
    task.set_retry(
        num_retries=3, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="900s"
    )


def _scratch(task, placement: Placement) -> None:
    """The image cache's scratch volume. KFP (SDK and kfp-kubernetes 2.17) cannot set a
    container's ephemeral-storage request, so an emptyDir is only size-limited (the kubelet
    evicts a pod past it); with ``--scratch-storage-class`` the scratch is a generic ephemeral
    volume of that class, whose size is reserved when the pod is scheduled."""
    from kfp import kubernetes

    if placement.scratch_storage_class:
        kubernetes.add_ephemeral_volume(
            task,
            volume_name="scratch",
            mount_path="/scratch",
            access_modes=["ReadWriteOnce"],
            size=f"{SCRATCH_GI}Gi",
            storage_class_name=placement.scratch_storage_class,
        )
    else:
        kubernetes.empty_dir_mount(
            task, volume_name="scratch", mount_path="/scratch", size_limit=f"{SCRATCH_GI}Gi"
        )


def on_cpu(task, cpu: str = "2", memory: str = "4G") -> None:
    """A CPU node (memory request = limit); retries for transient failures."""
    task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
    task.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)


def with_s3_secret(task, placement: Placement) -> None:
    """S3 credentials from the ``protloc-s3`` Secret; the container runs as user 1000."""
    from kfp import kubernetes

    kubernetes.use_secret_as_env(
        task, secret_name=S3_SECRET, secret_key_to_env={k: k for k in S3_SECRET_KEYS}
    )
    # The images run as the unprivileged user 1000 (containers/Dockerfile); enforce it in the pod too.
    kubernetes.set_security_context(task, run_as_user=1000, run_as_group=1000, run_as_non_root=True)
    if placement.image_pull_secret:
        kubernetes.set_image_pull_secrets(task, [placement.image_pull_secret])


def place_fingerprint(task, placement: Placement | None) -> None:
    """The fingerprint task: never cached (it is what tells whether the data changed); on a
    cluster a small CPU pod of the GPU image, with no retry (a code mismatch fails at once, and
    storage calls retry by themselves)."""
    task.set_caching_options(enable_caching=False)
    if placement is not None:
        task.set_cpu_request("1").set_cpu_limit("1").set_memory_request("2G").set_memory_limit("2G")
        with_s3_secret(task, placement)


def place(
    task, gpu: bool, placement: Placement | None, gpus: int = 1, cpus: int = 2, cache: bool = True
) -> None:
    """Caching on (``cache``); on a cluster (``placement``), its node, resources (``gpus``
    per GPU task, ``cpus`` per CPU task), secrets and retries."""
    task.set_caching_options(enable_caching=cache)
    if placement is not None:
        if gpu:
            on_gpu(task, placement, gpus)
        else:
            on_cpu(task, str(cpus), f"{2 * cpus}G")
        with_s3_secret(task, placement)
