"""The informer against a real API server: it mirrors ConfigMaps through add, update and
delete, resumes after the server ends its watches, relists after 410 Gone, and catches up with a
diff (deletes included) when it runs again after a stop."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import kr8s.asyncio
import pytest

from etcdop.kube.client import CONFIGMAPS, NAMESPACES, KubeClient, Resource
from etcdop.kube.informer import Informer, enqueue_object
from etcdop.kube.store import Change
from etcdop.kube.workqueue import WorkQueue
from tests.crds import install_crd
from tests.waiting import eventually

pytestmark = pytest.mark.cluster

GIZMOS = Resource("kubetest.etcdop.io", "v1", "gizmos", "Gizmo")
GIZMO_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gizmos.kubetest.etcdop.io"},
    "spec": {
        "group": "kubetest.etcdop.io",
        "names": {"kind": "Gizmo", "plural": "gizmos", "singular": "gizmo"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }},
        }],
    },
}


@pytest.fixture
async def kube(kube_api: kr8s.asyncio.Api) -> KubeClient:
    return KubeClient(kube_api, timeout=15.0, field_manager="etcdop-test")


@pytest.fixture
async def namespace(kube: KubeClient) -> AsyncIterator[str]:
    name = f"kube-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    await kube.delete(NAMESPACES, name)


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    task = informer.start()
    try:
        async with asyncio.timeout(30):
            await informer.synced.wait()
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def cm(name: str, ns: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": {"app": "kubetest"}},
            "data": data}


def names(informer: Informer) -> set[str]:
    return {o["metadata"]["name"] for o in informer.store}


async def test_informer_mirrors_adds_updates_and_deletes(kube: KubeClient, namespace: str) -> None:
    await kube.create(CONFIGMAPS, cm("before", namespace, v="0"))
    informer = Informer(kube, CONFIGMAPS, namespace=namespace, label_selector="app=kubetest")
    changes: list[tuple[str, str]] = []
    informer.add_handler(lambda c: changes.append((c.type, c.obj["metadata"]["name"])))
    queue: WorkQueue[str] = WorkQueue()
    informer.add_handler(enqueue_object(queue.add))

    async with running(informer):
        assert names(informer) == {"before"}, "the first LIST fills the store before synced"
        assert changes == [("added", "before")]
        listed = informer.store.get(f"{namespace}/before")
        assert listed is not None and listed["kind"] == "ConfigMap", "list items get their kind"
        assert "managedFields" not in listed["metadata"], "the cache drops managedFields"

        await kube.create(CONFIGMAPS, cm("a", namespace, v="1"))
        await kube.create(CONFIGMAPS, {"metadata": {"name": "unlabelled", "namespace": namespace}})
        await kube.patch(CONFIGMAPS, "a", {"data": {"v": "2"}}, namespace)
        await kube.delete(CONFIGMAPS, "before", namespace)

        def caught_up() -> bool:
            a = informer.store.get(f"{namespace}/a")
            return a is not None and a["data"] == {"v": "2"} and "before" not in names(informer)

        await eventually(caught_up, 30, "the informer to see the create, patch and delete")
        assert changes == [("added", "before"), ("added", "a"), ("updated", "a"),
                           ("deleted", "before")]
        assert "unlabelled" not in names(informer), "the label selector filters"
        watched = informer.store.get(f"{namespace}/a")
        assert watched is not None and "managedFields" not in watched["metadata"]
        assert informer.resource_version != ""
        assert [await queue.get() for _ in range(queue.depth)] == [
            f"{namespace}/before", f"{namespace}/a"]


async def test_informer_resumes_watches_the_server_ends(kube: KubeClient, namespace: str) -> None:
    informer = Informer(kube, CONFIGMAPS, namespace=namespace, watch_timeout=(1, 2))
    seen: list[Change] = []
    informer.add_handler(seen.append)
    async with running(informer):
        await eventually(lambda: informer.watches >= 3, 30,
                         "the server to end two watches (timeoutSeconds 1-2)")
        await kube.create(CONFIGMAPS, cm("late", namespace))
        await eventually(lambda: "late" in names(informer), 30, "the object created after "
                         "several server-ended watches to reach the store")
        assert informer.relists == 1, "a watch that ends cleanly resumes; it does not relist"
        assert [c.type for c in seen if c.obj["metadata"]["name"] == "late"] == ["added"]


async def ensure_gizmo_crd(kube: KubeClient) -> None:
    await install_crd(kube, GIZMO_CRD)


async def test_informer_relists_after_410_gone(kube: KubeClient, namespace: str) -> None:
    await ensure_gizmo_crd(kube)

    async def create_gizmo(name: str) -> None:
        body = {"apiVersion": "kubetest.etcdop.io/v1", "kind": "Gizmo",
                "metadata": {"name": name, "namespace": namespace}, "spec": {}}

        async def created() -> bool:  # a new CRD may answer 404 for a moment
            from etcdop.kube.client import NotFoundError

            try:
                await kube.create(GIZMOS, body)
            except NotFoundError:
                return False
            return True

        await eventually(created, 30, f"gizmo {name} to be created")

    await create_gizmo("g1")
    informer = Informer(kube, GIZMOS, namespace=namespace, watch_timeout=(1, 2))
    async with running(informer):
        assert names(informer) == {"g1"}
        # A resume point the server no longer keeps, as after a long disconnection: the custom
        # resource's watch cache starts at the CRD's creation, far after version 2.
        informer._rv = "2"
        await eventually(lambda: informer.relists >= 2, 30,
                         "the next watch to get 410 Gone and the informer to relist")
        await create_gizmo("g2")
        await eventually(lambda: names(informer) == {"g1", "g2"}, 30,
                         "the informer to keep watching after the relist")


async def test_informer_run_again_catches_up_with_deletes(kube: KubeClient, namespace: str) -> None:
    for n in ("keep", "drop"):
        await kube.create(CONFIGMAPS, cm(n, namespace))
    informer = Informer(kube, CONFIGMAPS, namespace=namespace, label_selector="app=kubetest")
    seen: list[tuple[str, str]] = []
    informer.add_handler(lambda c: seen.append((c.type, c.obj["metadata"]["name"])))
    async with running(informer):
        assert names(informer) == {"keep", "drop"}
    # while nobody watches: one object goes, one comes, one changes
    await kube.delete(CONFIGMAPS, "drop", namespace)
    await kube.create(CONFIGMAPS, cm("new", namespace))
    await kube.patch(CONFIGMAPS, "keep", {"data": {"x": "1"}}, namespace)
    seen.clear()
    async with running(informer):
        assert names(informer) == {"keep", "new"}
        assert sorted(seen) == [("added", "new"), ("deleted", "drop"), ("updated", "keep")]


class Faults:
    """A TCP relay on loopback between a client and the real API server that can freeze its
    connections (a half-open peer: nothing arrives, nothing closes), cut them, or refuse new
    ones, to show the informer recovers from each."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, asyncio.Event]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        flowing = asyncio.Event()
        flowing.set()
        self._conns.append((writer, up_writer, flowing))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst, flowing))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    flowing: asyncio.Event) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                await flowing.wait()  # frozen: hold the bytes forever, close nothing
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(OSError, RuntimeError):
            dst.close()

    def freeze(self) -> None:
        for _, _, flowing in self._conns:
            flowing.clear()
        self._conns.clear()  # new connections flow again

    def cut(self) -> None:
        for down, up, _ in self._conns:
            down.transport.abort()
            up.transport.abort()
        self._conns.clear()

    async def close(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()


async def test_informer_recovers_from_half_open_cut_and_refused_connections(
    control_plane: Any, kube: KubeClient, namespace: str, tmp_path: Any
) -> None:
    import yaml

    faults = Faults(int(control_plane.server.rsplit(":", 1)[1]))
    await faults.listen()
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{faults.port}"
    kubeconfig = tmp_path / "via-faults.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))
    relayed = KubeClient(api, timeout=5.0)
    informer = Informer(relayed, CONFIGMAPS, namespace=namespace, label_selector="app=kubetest",
                        watch_timeout=(300, 300), idle_timeout=3.0)
    try:
        async with running(informer):
            await kube.create(CONFIGMAPS, cm("first", namespace))
            await eventually(lambda: "first" in names(informer), 30, "the first object")

            # half-open: the stream stays open and silent; only the idle timeout ends it
            faults.freeze()
            await kube.create(CONFIGMAPS, cm("while-frozen", namespace))
            await eventually(lambda: "while-frozen" in names(informer), 30,
                             "the informer to give up the silent stream and resume")

            # cut: the connection dies mid-stream
            faults.cut()
            await kube.create(CONFIGMAPS, cm("after-cut", namespace))
            await eventually(lambda: "after-cut" in names(informer), 30,
                             "the informer to reconnect after a cut connection")

            # refused: nothing listens for a while; the informer keeps trying, with backoff
            await faults.refuse()
            faults.cut()
            await kube.create(CONFIGMAPS, cm("while-refused", namespace))
            watches = informer.watches
            await eventually(lambda: informer.watches >= watches + 2, 30,
                             "the informer to retry while connections are refused")
            await faults.listen()
            await eventually(lambda: "while-refused" in names(informer), 60,
                             "the informer to come back once the server is reachable")
            assert names(informer) == {"first", "while-frozen", "after-cut", "while-refused"}
            assert informer.relists == 1, "each recovery resumed from the last version"
    finally:
        await faults.close()
