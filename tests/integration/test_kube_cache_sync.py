"""A leader whose informers RBAC refuses must not sit on the lease reconciling nothing: against
the real API server, with a service account lacking one verb on one resource, the cache-sync
wait times out with an error naming the resource, the verb, the identity and what to grant, and
the lease is handed back (by the elector, and by the `etcdop operator` process, which exits 1)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest
import yaml

from e2e.localcluster.controlplane import ControlPlane
from etcdop.kube.client import (
    CONFIGMAPS,
    LEASES,
    NAMESPACES,
    SERVICES,
    ApiError,
    KubeClient,
    Resource,
)
from etcdop.kube.informer import CacheSyncError, Informer, wait_for_sync
from etcdop.kube.leader import LeaderElector
from tests.crds import install_crd
from tests.waiting import eventually

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
LOGGER = "etcdop.operator"
MANAGED = "app.kubernetes.io/managed-by=etcdop"
SYNC = 3.0  # the cache-sync timeout under test
MARGIN = 1.5  # for the lease hand-back after the timeout
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
LEASE_RULE = {
    "apiGroups": ["coordination.k8s.io"],
    "resources": ["leases"],
    "verbs": ["get", "create", "update"],
}


@pytest.fixture
async def admin(kube_api: kr8s.asyncio.Api) -> KubeClient:
    return KubeClient(kube_api, timeout=15.0)


@pytest.fixture
async def namespace(admin: KubeClient) -> AsyncIterator[str]:
    name = f"sync-{uuid.uuid4().hex[:8]}"
    await admin.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    await admin.delete(NAMESPACES, name)


async def login_as_operator(
    admin: KubeClient, cp: ControlPlane, ns: str, rules: list[dict[str, Any]], tmp: Path
) -> Path:
    """Service account NS/operator, granted RULES in NS only; returns a kubeconfig for it,
    once its lease rights are in effect."""
    await admin.create(SERVICEACCOUNTS, {"metadata": {"name": "operator"}}, ns)
    await admin.create(ROLES, {"metadata": {"name": "operator"}, "rules": rules}, ns)
    binding = {
        "metadata": {"name": "operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": ns}],
    }
    await admin.create(ROLEBINDINGS, binding, ns)
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": 600}}
    issued = await admin.request(
        "POST", SERVICEACCOUNTS, namespace=ns, name="operator", subresource="token", body=request
    )
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "local",
                      "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)}}],
        "users": [{"name": "operator", "user": {"token": issued["status"]["token"]}}],
        "contexts": [{"name": "operator",
                      "context": {"cluster": "local", "user": "operator", "namespace": ns}}],
    }
    path = tmp / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    api = await kr8s.asyncio.api(kubeconfig=str(path))
    probe = KubeClient(api, timeout=10.0, attempts=1)

    async def leases_allowed() -> bool:
        try:
            await probe.get(LEASES, "probe", ns)
        except ApiError:
            return False
        return True

    await eventually(leases_allowed, 15, f"the Role binding of {ns}/operator to take effect")
    return path


async def lease_holder(admin: KubeClient, ns: str, name: str) -> str:
    lease = await admin.get(LEASES, name, ns)
    assert lease is not None, f"lease {ns}/{name} was never created: the elector never led"
    return str(lease["spec"].get("holderIdentity") or "")


async def lead_with_informers(
    sa: KubeClient, ns: str, informers: list[Informer]
) -> tuple[CacheSyncError, float, bool]:
    """Lead with INFORMERS as the work; returns the error ``lead`` raised, the seconds from
    becoming leader to giving the lease up, and whether reconciling ever started."""
    loop = asyncio.get_running_loop()
    marks: dict[str, float] = {}
    reconciling = asyncio.Event()

    async def work() -> None:
        tasks = [informer.start() for informer in informers]
        try:
            await wait_for_sync(informers, SYNC)
            reconciling.set()
            await asyncio.Future()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    elector = LeaderElector(
        sa, "etcdop-sync", ns, "one", lease_duration=15, renew_deadline=10, retry_period=2,
        on_started=lambda: marks.update(led=loop.time()),
        on_stopped=lambda: marks.update(stopped=loop.time()),
    )
    with pytest.raises(CacheSyncError) as raised:
        await asyncio.wait_for(elector.lead(work), SYNC + 15)
    assert not elector.is_leader.is_set()
    return raised.value, marks["stopped"] - marks["led"], reconciling.is_set()


async def test_an_informer_refused_list_gives_up_the_lease_naming_what_to_grant(
    admin: KubeClient, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    rules = [
        LEASE_RULE,
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["watch"]},  # no list
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
    ]
    config = await login_as_operator(admin, control_plane, namespace, rules, tmp_path)
    sa = KubeClient(await kr8s.asyncio.api(kubeconfig=str(config)), timeout=10.0)
    refused = Informer(sa, CONFIGMAPS, namespace=namespace)
    allowed = Informer(sa, SERVICES, namespace=namespace)

    error, held, reconciled = await lead_with_informers(sa, namespace, [refused, allowed])

    assert str(error) == (
        f"informer for configmaps (v1) in namespace {namespace}: list refused (403 Forbidden) "
        f"for system:serviceaccount:{namespace}:operator; grant list,watch on configmaps of "
        f'the core API group "" in namespace {namespace} (a Role)'
    )
    assert error.informers == [str(refused)], "the informer that synced is not blamed"
    assert allowed.synced.is_set()
    assert not reconciled
    assert held <= SYNC + MARGIN, f"held the lease {held:.1f}s, past the {SYNC}s sync timeout"
    assert await lease_holder(admin, namespace, "etcdop-sync") == "", "the lease is handed back"


async def test_an_informer_refused_watch_is_not_synced(
    admin: KubeClient, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """Listed but refused its watch, a cache would never change again: not synced either."""
    rules = [LEASE_RULE, {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]
    config = await login_as_operator(admin, control_plane, namespace, rules, tmp_path)
    sa = KubeClient(await kr8s.asyncio.api(kubeconfig=str(config)), timeout=10.0)
    informer = Informer(sa, CONFIGMAPS, namespace=namespace)

    error, held, reconciled = await lead_with_informers(sa, namespace, [informer])

    assert informer.relists >= 1, "the list itself was allowed"
    assert f"in namespace {namespace}: watch refused (403 Forbidden) for " in str(error)
    assert "grant list,watch on configmaps" in str(error)
    assert not reconciled
    assert held <= SYNC + MARGIN
    assert await lease_holder(admin, namespace, "etcdop-sync") == ""


async def test_the_operator_process_exits_1_and_hands_the_lease_back(
    admin: KubeClient, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """`etcdop operator` with RBAC lacking list on PodDisruptionBudgets: it leads, cannot sync,
    says so in one error line, hands the lease back and exits 1."""
    crd = yaml.safe_load((REPO / "crds" / "etcdclusters.etcdop.io.yaml").read_text())
    await install_crd(admin, crd)
    rules = [
        LEASE_RULE,
        {"apiGroups": ["etcdop.io"], "resources": ["etcdclusters"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["pods", "persistentvolumeclaims", "services"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["watch"]},
    ]
    config = await login_as_operator(admin, control_plane, namespace, rules, tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "etcdop", "operator", "--kubeconfig", str(config),
        "--namespace", namespace, "--lease-namespace", namespace, "--id", "op-1",
        "--cache-sync-timeout", str(SYNC), "--metrics-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), SYNC + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = err.decode()
    assert proc.returncode == 1, f"exit code {proc.returncode}; log:\n{log}"
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    errors = [r["msg"] for r in records if r["level"] == "error" and r["logger"] == LOGGER]
    expected = (
        f"informer for poddisruptionbudgets (policy/v1) in namespace {namespace} ({MANAGED}): "
        f"list refused (403 Forbidden) for system:serviceaccount:{namespace}:operator; grant "
        f'list,watch on poddisruptionbudgets of API group "policy" in namespace {namespace} '
        "(a Role)"
    )
    assert len(errors) == 1 and expected in errors[0], log
    assert "etcdclusters" not in errors[0] and "pods (v1)" not in errors[0], "only the refused"
    assert any("became leader" in r["msg"] for r in records), log
    assert await lease_holder(admin, namespace, "etcdop-operator") == "", "lease handed back"
