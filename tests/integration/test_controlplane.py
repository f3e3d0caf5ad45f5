"""The local control plane is a real Kubernetes: health, version, CRDs, RBAC, garbage collection."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid

import httpx
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import ConfigMap, Namespace, ServiceAccount, new_class

from e2e.localcluster.binaries import K8S_VERSION
from e2e.localcluster.controlplane import ControlPlane
from tests.waiting import eventually

pytestmark = pytest.mark.cluster

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.etcdop.io"},
    "spec": {
        "group": "test.etcdop.io",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"seen": {"type": "integer"}}},
                },
            }},
        }],
    },
}


def admin_client(cp: ControlPlane) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(cp.ca_file))
    ctx.load_cert_chain(cp.pki_dir / "admin.crt", cp.pki_dir / "admin.key")
    return httpx.Client(base_url=cp.server, verify=ctx, timeout=10)


async def fresh_namespace(api: kr8s.asyncio.Api) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    ns = await Namespace({"metadata": {"name": name}}, api=api)
    await ns.create()
    return name


def test_readyz_and_version(control_plane: ControlPlane) -> None:
    with admin_client(control_plane) as http:
        assert http.get("/readyz").text == "ok"
        version = http.get("/version").json()
    assert version["gitVersion"] == K8S_VERSION
    assert (version["major"], version["minor"]) == ("1", K8S_VERSION.split(".")[1])


async def test_crd_objects_crud_watch_and_status(kube_api: kr8s.asyncio.Api) -> None:
    crd_cls = new_class("CustomResourceDefinition", version="apiextensions.k8s.io/v1",
                        namespaced=False)
    crd = await crd_cls(WIDGET_CRD, api=kube_api)
    if not await crd.exists():
        await crd.create()

    async def established() -> bool:
        await crd.refresh()
        conds = crd.raw.get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    await eventually(established, 30, "the Widget CRD to be established")
    ns = await fresh_namespace(kube_api)
    widget_cls = new_class("Widget", version="test.etcdop.io/v1", namespaced=True)

    w = await widget_cls({"metadata": {"name": "w1", "namespace": ns}, "spec": {"size": 1}},
                         api=kube_api)
    await w.create()
    listed = [o.name async for o in kube_api.async_get("widgets.test.etcdop.io", namespace=ns)]
    assert listed == ["w1"]

    seen: list[tuple[str, int]] = []
    first_event = asyncio.Event()

    async def watch_until_modified() -> None:
        # a watch without resourceVersion starts with an ADDED event for what exists
        async for event, obj in kube_api.watch("widgets.test.etcdop.io", namespace=ns):
            seen.append((event, obj.raw["spec"]["size"]))
            first_event.set()
            if event == "MODIFIED":
                return

    watcher = asyncio.create_task(watch_until_modified())
    await asyncio.wait_for(first_event.wait(), 30)
    await w.patch({"spec": {"size": 2}})
    await asyncio.wait_for(watcher, 30)
    assert seen == [("ADDED", 1), ("MODIFIED", 2)]

    await w.patch({"status": {"seen": 2}}, subresource="status")
    await w.refresh()
    assert w.raw["status"] == {"seen": 2}
    # a status write through the main resource is ignored: status belongs to its subresource
    await w.patch({"status": {"seen": 99}})
    await w.refresh()
    assert w.raw["status"] == {"seen": 2}


async def test_rbac_is_enforced(control_plane: ControlPlane, kube_api: kr8s.asyncio.Api) -> None:
    ns = await fresh_namespace(kube_api)
    sa = await ServiceAccount({"metadata": {"name": "reader", "namespace": ns}}, api=kube_api)
    await sa.create()
    async with kube_api.call_api(
        "POST", version="v1", namespace=ns, url="serviceaccounts/reader/token",
        content=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": {"expirationSeconds": 600}}),
    ) as resp:
        token = resp.json()["status"]["token"]

    ctx = ssl.create_default_context(cafile=str(control_plane.ca_file))
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/api/v1/namespaces/{ns}/configmaps"
    async with httpx.AsyncClient(
        base_url=control_plane.server, verify=ctx, headers=headers
    ) as http:
        assert (await http.get(url)).status_code == 403

        role = await new_class("Role", version="rbac.authorization.k8s.io/v1", namespaced=True)(
            {"metadata": {"name": "cm-reader", "namespace": ns},
             "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]},
            api=kube_api)
        await role.create()
        binding = await new_class(
            "RoleBinding", version="rbac.authorization.k8s.io/v1", namespaced=True)(
            {"metadata": {"name": "cm-reader", "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "cm-reader"},
             "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]},
            api=kube_api)
        await binding.create()

        async def allowed() -> bool:
            return (await http.get(url)).status_code == 200

        await eventually(allowed, 15, "the RoleBinding to take effect")
        # the binding grants list only: writing is still refused
        assert (await http.post(url, json={"metadata": {"name": "x"}})).status_code == 403


async def test_garbage_collector_deletes_dependents(kube_api: kr8s.asyncio.Api) -> None:
    ns = await fresh_namespace(kube_api)
    owner = await ConfigMap({"metadata": {"name": "owner", "namespace": ns}}, api=kube_api)
    await owner.create()
    child = await ConfigMap({"metadata": {"name": "child", "namespace": ns, "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}},
        api=kube_api)
    await child.create()
    await owner.delete()

    async def child_gone() -> bool:
        return not await child.exists()

    await eventually(child_gone, 90, "the garbage collector to delete the dependent ConfigMap")
