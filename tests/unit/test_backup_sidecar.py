"""The agent sidecar in member pods and the token Secret, as rendered."""

from __future__ import annotations

import base64

from etcdop.api import EtcdCluster
from etcdop.kube.store import Store
from etcdop.operator import manifests
from etcdop.operator.etcdcluster.token import cluster_token, render_token_secret, token_component


def ec(backup: bool = True) -> EtcdCluster:
    spec: dict[str, object] = {"version": "3.6.16", "size": 3}
    if backup:
        spec["backup"] = {"storage": {"bucket": "b", "credentialsSecret": "s3-creds"}}
    return EtcdCluster.from_dict(
        {"metadata": {"name": "demo", "namespace": "ns", "uid": "u-1"}, "spec": spec}
    )


def test_the_agent_is_a_native_sidecar_with_token_and_credentials_mounted() -> None:
    pod = manifests.member_pod(ec(), "demo-x", "demo-x=http://p", "new", "cluster.local",
                               agent_image="etcdop:test")
    (agent,) = pod["spec"]["initContainers"]
    assert agent["restartPolicy"] == "Always" and agent["image"] == "etcdop:test"
    assert pod["spec"]["automountServiceAccountToken"] is False
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert mounts["agent-token"] == "/etc/etcdop/token"
    assert mounts["s3-credentials"] == "/etc/etcdop/s3/s3-creds"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["agent-token"]["secret"]["secretName"] == "demo-agent-token"
    assert volumes["s3-credentials"]["secret"]["secretName"] == "s3-creds"
    env = {e["name"]: e for e in agent["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["ETCDOP_CLUSTER"]["value"] == "demo"
    sc = agent["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}


def test_no_credentials_volume_without_spec_backup() -> None:
    pod = manifests.member_pod(ec(backup=False), "demo-x", "i", "new", "cluster.local")
    assert "s3-credentials" not in {v["name"] for v in pod["spec"]["volumes"]}


def test_the_token_is_kept_once_stored() -> None:
    cache = Store()
    first = token_component(cache).render(ec())
    assert first["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    stored = {**first, "metadata": {**first["metadata"], "resourceVersion": "1"}}
    cache.replace([stored])
    again = token_component(cache).render(ec())
    assert again["data"] == first["data"]
    token = base64.b64decode(first["data"]["token"]).decode()
    assert cluster_token(cache, "ns", "demo") == token and len(token) >= 40
    assert render_token_secret(ec(), "x")["data"]["token"] == base64.b64encode(b"x").decode()
