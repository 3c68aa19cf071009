"""What ships in k8s/ is what a real Kubeflow Pipelines install accepts: rendered with kustomize
(as `kubectl apply -k` does), each overlay holds the objects it promises, the runner's Role
grants what KFP's launcher and driver and Argo's executor need (tests/data/kfp names the
source) and nothing cluster-wide, and a quota on requests comes with defaults for Argo's
containers."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from components import cluster
from tests.conftest import ROOT

OVERLAYS = {"base": ROOT / "k8s" / "base", "standalone": ROOT / "k8s" / "overlays" / "standalone"}


def render(folder) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render k8s/"
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(folder) for name, folder in OVERLAYS.items()}


def _kinds(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def test_the_base_owns_no_namespace_and_leaves_kfp_launcher_alone(rendered):
    kinds = _kinds(rendered["base"])
    assert "Namespace" not in kinds
    assert not [c for c in kinds.get("ConfigMap", []) if c["metadata"]["name"] == "kfp-launcher"]
    assert set(kinds) == {
        "ServiceAccount", "Role", "RoleBinding", "Secret", "ResourceQuota", "LimitRange"
    }  # fmt: skip


def test_the_standalone_overlay_adds_its_namespace_and_pipeline_root(rendered):
    kinds = _kinds(rendered["standalone"])
    assert [n["metadata"]["name"] for n in kinds["Namespace"]] == [cluster.NAMESPACE]
    (launcher,) = kinds["ConfigMap"]
    assert launcher["metadata"]["name"] == "kfp-launcher"
    assert launcher["data"]["defaultPipelineRoot"].startswith("s3://")


def test_one_namespace_across_k8s_and_submit(rendered):
    for docs in rendered.values():
        for d in docs:
            if d["kind"] != "Namespace":
                assert d["metadata"]["namespace"] == cluster.NAMESPACE, d["metadata"]["name"]
    import pipeline

    submit = next(a for a in pipeline.parser()._actions if a.dest == "command").choices["submit"]
    namespace = next(a for a in submit._actions if a.dest == "namespace")
    assert namespace.default == cluster.NAMESPACE


def _grants(role: dict, group: str, resource: str, verb: str) -> bool:
    return any(
        group in r.get("apiGroups", [])
        and resource in r.get("resources", [])
        and (verb in r.get("verbs", []) or "*" in r.get("verbs", []))
        for r in role["rules"]
    )


def test_the_runner_may_do_what_kfp_and_argo_need_and_nothing_cluster_wide(rendered):
    needed = yaml.safe_load(
        (ROOT / "tests" / "data" / "kfp" / "pipeline-runner-rules.yaml").read_text()
    )
    for name, docs in rendered.items():
        kinds = _kinds(docs)
        assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds, name
        (account,) = kinds["ServiceAccount"]
        assert account["metadata"]["name"] == cluster.SERVICE_ACCOUNT
        assert account.get("automountServiceAccountToken", True) is True
        (role,) = kinds["Role"]
        missing = [
            (g, res, v)
            for rule in needed
            for g in rule["apiGroups"]
            for res in rule["resources"]
            for v in rule["verbs"]
            if not _grants(role, g, res, v)
        ]
        assert missing == [], name
        assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in role["rules"])
        (binding,) = kinds["RoleBinding"]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]
        }  # fmt: skip
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": cluster.SERVICE_ACCOUNT, "namespace": cluster.NAMESPACE}
        ]  # fmt: skip


def test_the_role_check_fails_on_a_role_that_lacks_a_rule():
    role = {"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}
    assert _grants(role, "", "configmaps", "get")
    assert not _grants(role, "", "secrets", "get")
    assert not _grants(role, "argoproj.io", "workflowtaskresults", "create")


def test_a_quota_on_requests_comes_with_default_requests(rendered):
    for name, docs in rendered.items():
        kinds = _kinds(docs)
        for quota in kinds.get("ResourceQuota", []):
            limited = [k for k in quota["spec"]["hard"] if k.startswith(("requests.", "limits."))]
            defaults = {}
            for lr in kinds.get("LimitRange", []):
                for item in lr["spec"]["limits"]:
                    if item["type"] == "Container":
                        for key in ("defaultRequest", "default"):
                            for res in item.get(key, {}):
                                defaults.setdefault(key, set()).add(res)
            for key in limited:
                kind, _, res = key.partition(".")
                if res == "nvidia.com/gpu":  # extended resources are requested explicitly
                    continue
                want = "defaultRequest" if kind == "requests" else "default"
                assert res in defaults.get(want, set()), (name, key)


def test_the_secret_is_a_template(rendered):
    for docs in rendered.values():
        for secret in _kinds(docs).get("Secret", []):
            for key, value in secret.get("stringData", {}).items():
                if key.startswith("AWS_") and key != "AWS_ENDPOINT_URL":
                    assert value == "REPLACE_ME", key
