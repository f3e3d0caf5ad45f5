"""The kubelet part of the local node: one worker per pod bound to our Nodes runs its containers
as local processes (through the sandbox's netns/proc modules), probes them, restarts them per
policy and reports the pod's status; deletion is graceful and ends with the final delete.

A node restart (the agent stopped and started, or one Node stopped and started with
`faults.stop_node`/`start_node`) is a reboot: no process survives it, but pod objects and their
volumes do. A worker that finds a pod with history in its status resumes it as the kubelet does:
restartPolicy Never pods whose containers ran are not run again (a run that died with the node is
reported terminated, exit code 137, reason Error), others start over with restartCount + 1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kr8s

from e2e.localcluster import config
from e2e.localcluster.node import faults
from e2e.localcluster.node import pods as podlib
from e2e.localcluster.node.containers import ContainerRunner
from e2e.localcluster.node.images import ImageMap
from e2e.localcluster.node.kubeapi import Kube, Obj, list_watch
from e2e.localcluster.node.pods import ContainerRecord, PodFacts, PodRecord
from e2e.localcluster.node.volumes import PodVolumes, VolumeManager, VolumeNotReady

log = logging.getLogger("etcdop.localnode.kubelet")

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RETRY_SETUP = 2.0
REFRESH_VOLUMES_EVERY = 300.0
STATUS_MIN_INTERVAL = 0.2


def pod_dir_name(ns: str, name: str, uid: str) -> str:
    return f"{ns}_{name}_{uid}"


def pod_dirs(state_dir: Path, ns: str, name: str) -> list[Path]:
    """Every pod directory (one per uid) of NS/NAME, newest first."""
    found = list((state_dir / "pods").glob(f"{ns}_{name}_*"))
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def pod_logs(state_dir: Path, ns: str, name: str, container: str, previous: bool = False) -> str:
    """What ``kubectl logs [--previous]`` would print for the newest pod called NS/NAME."""
    for d in pod_dirs(state_dir, ns, name):
        cdir = d / "containers" / container
        runs = sorted(cdir.glob("*.log"), key=lambda p: int(p.stem))
        if previous:
            runs = runs[:-1]
        if runs:
            return runs[-1].read_text(errors="replace")
    raise FileNotFoundError(
        f"no logs of container {container!r} of pod {ns}/{name} under {state_dir / 'pods'}"
    )


@dataclasses.dataclass
class NodeContext:
    """What every pod worker shares."""

    kube: Kube
    state_dir: Path
    images: ImageMap
    volumes: VolumeManager
    api_host: str
    api_port: int


class PodWorker:
    """Owns one pod from its first sighting to its final delete."""

    def __init__(self, ctx: NodeContext, pod: Obj) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.ns: str = meta["namespace"]
        self.name: str = meta["name"]
        self.key = f"{self.ns}/{self.name}"
        self.dir = ctx.state_dir / "pods" / pod_dir_name(self.ns, self.name, self.uid)
        spec = pod["spec"]
        self.node: str = spec.get("nodeName", "")
        self.hostname: str = spec.get("hostname") or self.name
        self.rec = PodRecord(uid=self.uid, restart_policy=spec.get("restartPolicy", "Always"))
        self.runners: dict[str, ContainerRunner] = {}
        previous = {
            c["name"]: c
            for c in (pod.get("status", {}).get("containerStatuses") or [])
            + (pod.get("status", {}).get("initContainerStatuses") or [])
        }
        for c in spec.get("initContainers", []) or []:
            kind: podlib.Kind = "sidecar" if c.get("restartPolicy") == "Always" else "init"
            self._add(c, kind, self.rec.init, previous.get(c["name"]))
        for c in spec.get("containers", []):
            self._add(c, "main", self.rec.main, previous.get(c["name"]))
        # After a node restart the kubelet does not run a restartPolicy Never pod again once any
        # of its containers ran: whatever did not finish is reported lost, and the pod is done.
        self.done_at_boot = self.rec.restart_policy == "Never" and any(
            r.ran for r in self.runners.values()
        )
        for r in self.runners.values():
            rec = r.rec
            if self.done_at_boot or (
                self.rec.restart_policy == "OnFailure"
                and rec.kind == "main"
                and rec.state == "terminated"
                and rec.exit_code == 0
            ):
                if rec.state != "terminated":
                    rec.terminated(podlib.LOST_EXIT_CODE, "Error")
                rec.wants_restart = False
                rec.completed = rec.kind == "init" and rec.exit_code == 0
                r.skip = True
        self.network: Any = None
        self.vols: PodVolumes | None = None
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()  # deletion requested or the agent is shutting down
        self.removed = False  # the pod object is gone from the API (no final delete needed)
        self.shutdown_only = False  # the agent stops: kill, clean, but leave the pod object
        self.dead = False  # its Node was stopped: killed at once, nothing written, volumes kept
        self.done = asyncio.Event()
        self.task = asyncio.create_task(self.run(), name=f"pod {self.key}")

    def _add(
        self,
        spec: Mapping[str, Any],
        kind: podlib.Kind,
        into: list[ContainerRecord],
        previous: Mapping[str, Any] | None,
    ) -> None:
        rec = ContainerRecord(name=spec["name"], image=spec.get("image", ""), kind=kind)
        ran = rec.resume(previous)  # a pod seen before a node restart keeps its history
        if kind == "main" and self.pod["spec"].get("initContainers") and rec.state == "waiting":
            rec.reason = "PodInitializing"
        into.append(rec)
        runner = ContainerRunner(self, spec, rec)
        runner.ran = ran
        self.runners[rec.name] = runner

    # -- events from the watch ---------------------------------------------------------------

    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.mark_dirty()  # someone else may have changed what we own in its status
        if pod["metadata"].get("deletionTimestamp"):
            self._stop.set()

    def gone(self) -> None:
        self.removed = True
        self._stop.set()

    def shutdown(self) -> None:
        self.shutdown_only = True
        self._stop.set()

    def power_off(self) -> None:
        """Its Node died: SIGKILL everything now, write nothing, keep volumes and the pod IP."""
        self.dead = True
        self.shutdown_only = True
        self._stop.set()

    def mark_dirty(self) -> None:
        self._dirty.set()

    def grace_seconds(self) -> float:
        meta = self.pod["metadata"]
        if self.removed:
            return 0.0
        g = meta.get("deletionGracePeriodSeconds")
        if g is None:
            g = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        grace = float(g)
        if self.dead:
            return 0.0
        if self.shutdown_only:
            grace = min(grace, 5.0)
        return grace

    async def sleep_unless_stopping(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    # -- env ---------------------------------------------------------------------------------

    def facts(self) -> PodFacts:
        return PodFacts(
            pod_ip=self.network.ip if self.network else "",
            host_ip=config.BRIDGE_IP,
            node_name=self.pod["spec"].get("nodeName", ""),
        )

    async def env_for(
        self, container: Mapping[str, Any], image_path: tuple[str, ...]
    ) -> dict[str, str]:
        secret_names, cm_names = podlib.referenced_names([container])
        secrets: dict[str, Mapping[str, str] | None] = {}
        cms: dict[str, Mapping[str, str] | None] = {}
        for n in secret_names:
            obj = await self.ctx.kube.get(f"/api/v1/namespaces/{self.ns}/secrets/{n}")
            secrets[n] = (
                None
                if obj is None
                else {
                    k: base64.b64decode(v).decode(errors="replace")
                    for k, v in (obj.get("data") or {}).items()
                }
            )
        for n in cm_names:
            obj = await self.ctx.kube.get(f"/api/v1/namespaces/{self.ns}/configmaps/{n}")
            cms[n] = None if obj is None else dict(obj.get("data") or {})
        host, port = self.ctx.api_host, str(self.ctx.api_port)
        base = {
            "PATH": ":".join([*image_path, HOST_PATH]),
            "HOSTNAME": self.hostname,
            "HOME": "/root",
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
        }
        return podlib.resolve_env(self.pod, container, self.facts(), secrets, cms, base)

    # -- the pod's life ----------------------------------------------------------------------

    def write_info(self) -> None:
        """pod.json: where a fault or a person finds this pod's netns, volumes and processes."""
        pids = {}
        for name, r in self.runners.items():
            if r.running is not None:
                pids[name] = r.running.pid
        info = {
            "namespace": self.ns,
            "name": self.name,
            "uid": self.uid,
            "node": self.pod["spec"].get("nodeName"),
            "netns": self.network.netns if self.network else None,
            "ip": self.network.ip if self.network else None,
            "volumes": self.vols.sources if self.vols else {},
            "pids": pids,
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / ".pod.json.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        tmp.replace(self.dir / "pod.json")

    async def _setup(self) -> bool:
        """Network and volumes, retried until they work or the pod stops; False if stopped."""
        from e2e.localcluster.node import netns

        self.dir.mkdir(parents=True, exist_ok=True)
        while not self._stop.is_set():
            try:
                if self.network is None:
                    self.network = await asyncio.to_thread(
                        netns.create_pod_network, self.uid, self.hostname
                    )
                    self.rec.pod_ip = self.network.ip
                    self.mark_dirty()
                self.vols = await self.ctx.volumes.setup(self.pod, self.dir, self.facts())
                self.write_info()
                return True
            except VolumeNotReady as e:
                msg = str(e)
            except (kr8s.ServerError, OSError, TimeoutError, RuntimeError) as e:
                msg = f"{type(e).__name__}: {e}"
            log.info("pod %s not ready to start: %s", self.key, msg)
            for r in self.runners.values():
                r.rec.retire()  # a run lost in a node restart stays visible as lastState
                r.rec.waiting("ContainerCreating", msg)
            self.mark_dirty()
            await self.sleep_unless_stopping(RETRY_SETUP)
        return False

    async def _lifecycle(self) -> None:
        """Init containers in order (sidecars kept running), then the main containers."""
        for rec in self.rec.init:
            r = self.runners[rec.name]
            r.task = asyncio.create_task(r.supervise())
            if rec.kind == "sidecar":
                await _first(r.started.wait(), r.finished.wait())
                if not r.started.is_set():
                    return
            else:
                await r.finished.wait()
                if not rec.completed:
                    if not self._stop.is_set():
                        self.rec.failed_reason = "InitContainerFailed"
                        self.mark_dirty()
                    return
        self.mark_dirty()
        mains = [self.runners[rec.name] for rec in self.rec.main]
        for r in mains:
            r.task = asyncio.create_task(r.supervise())
        await asyncio.gather(*(r.finished.wait() for r in mains))
        # the pod is done for good: its sidecars stop too (reverse order)
        for rec in reversed(self.rec.init):
            sc = self.runners[rec.name]
            if rec.kind == "sidecar" and sc.task is not None:
                sc.stopping = True
                await sc.terminate(self.grace_seconds())

    async def _status_writer(self) -> None:
        path = f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status"
        while True:
            await self._dirty.wait()
            await asyncio.sleep(STATUS_MIN_INTERVAL)
            self._dirty.clear()
            if self.removed or self.shutdown_only:
                continue  # a node going down reports nothing: the next boot does
            current = self.pod.get("status", {})
            status = podlib.pod_status(self.rec, current)
            if podlib.status_digest(status) == podlib.status_digest(current):
                continue
            try:
                out = await self.ctx.kube.merge_patch(path, {"status": status})
                if out is None:
                    self.removed = True
                    continue
                self.pod["status"] = out.get("status", status)
            except (kr8s.ServerError, OSError, TimeoutError) as e:
                log.warning("pod %s: status patch failed, will retry: %s", self.key, e)
                await asyncio.sleep(1)
                self._dirty.set()

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_VOLUMES_EVERY)
            if self.vols is not None:
                try:
                    await self.ctx.volumes.refresh(self.pod, self.facts(), self.vols)
                except (VolumeNotReady, kr8s.ServerError, OSError, TimeoutError) as e:
                    log.warning("pod %s: refreshing volumes failed: %s", self.key, e)

    async def run(self) -> None:
        self.rec.host_ip = config.BRIDGE_IP
        self.rec.start_time = self.pod.get("status", {}).get("startTime") or podlib.now_iso()
        writer = asyncio.create_task(self._status_writer())
        refresher = asyncio.create_task(self._refresher())
        lifecycle: asyncio.Task[None] | None = None
        try:
            self.mark_dirty()
            if self.done_at_boot:
                log.info(
                    "pod %s: restartPolicy Never and its containers ran: not run again", self.key
                )
            elif await self._setup():
                lifecycle = asyncio.create_task(self._lifecycle())
                await _first(self._stop.wait(), asyncio.shield(lifecycle))
            await self._stop.wait()
            await self._terminate(lifecycle)
        except Exception:
            log.exception("pod %s: worker failed", self.key)
            await self._terminate(lifecycle)
        finally:
            refresher.cancel()
            if not self.removed and not self.shutdown_only:
                await self._flush_status()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await self._final_delete()
            self.done.set()

    async def _flush_status(self) -> None:
        with contextlib.suppress(kr8s.ServerError, OSError, TimeoutError):
            status = podlib.pod_status(self.rec, self.pod.get("status", {}))
            await self.ctx.kube.merge_patch(
                f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status", {"status": status}
            )

    async def _terminate(self, lifecycle: asyncio.Task[None] | None) -> None:
        """Main containers get SIGTERM together, then sidecars in reverse order, within the
        grace period; then the network and the pod's own volumes go."""
        deadline = time.monotonic() + self.grace_seconds()
        for r in self.runners.values():
            r.stopping = True
        self._stop.set()
        if lifecycle is not None:
            lifecycle.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await lifecycle
        mains = [self.runners[rec.name] for rec in self.rec.main]
        hooks = not self.dead
        await asyncio.gather(
            *(r.terminate(deadline - time.monotonic(), hooks=hooks) for r in mains)
        )
        for rec in reversed(self.rec.init):
            r = self.runners[rec.name]
            grace = 0.0 if self.dead else max(deadline - time.monotonic(), 2.0)
            await r.terminate(grace, hooks=hooks)
        for r in self.runners.values():
            if r.task is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await r.finished.wait()
                r.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await r.task
        if self.network is not None:
            from e2e.localcluster.node import netns

            try:
                await asyncio.to_thread(
                    netns.delete_pod_network, self.uid, keep_ip=self.shutdown_only
                )
            except Exception as e:
                log.warning("pod %s: deleting its network failed: %s", self.key, e)
        if self.shutdown_only:
            # The node goes down, not the pod: its emptyDirs survive, as on a rebooted node.
            log.info("pod %s: containers stopped (node going down), volumes kept", self.key)
            return
        await asyncio.to_thread(VolumeManager.teardown, self.dir)
        log.info("pod %s: containers stopped and cleaned up", self.key)

    async def _final_delete(self) -> None:
        if self.removed or self.shutdown_only:
            return
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        for _ in range(10):
            try:
                await self.ctx.kube.delete(f"/api/v1/namespaces/{self.ns}/pods/{self.name}", body)
                return
            except kr8s.ServerError as e:
                if e.response is not None and e.response.status_code == 409:
                    return  # a new pod of the same name: ours is gone already
                log.warning("pod %s: final delete failed: %s", self.key, e)
            except (OSError, TimeoutError) as e:
                log.warning("pod %s: final delete failed: %s", self.key, e)
            await asyncio.sleep(1)


async def _first(*aws: Any) -> None:
    """Wait until the first of AWS completes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()


class Kubelet:
    """Watches every pod, and runs those bound to our Nodes."""

    def __init__(self, ctx: NodeContext, nodes: list[str]) -> None:
        self.ctx = ctx
        self.nodes = set(nodes)
        self.workers: dict[str, PodWorker] = {}
        self.pods: dict[str, Obj] = {}  # every pod bound to our Nodes, as last seen
        self.down: set[str] = {n for n in nodes if faults.node_stopped(n)}
        self.synced = asyncio.Event()
        self.booted = asyncio.Event()  # listed, and what pods that are gone left is removed

    async def on_pod(self, typ: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        node = pod.get("spec", {}).get("nodeName")
        if typ == "DELETED":
            self.pods.pop(uid, None)
            if w is not None:
                w.gone()
            elif node in self.nodes:
                await self._forget(pod)
            return
        if node not in self.nodes:
            return
        self.pods[uid] = pod
        if node in self.down:
            return  # a stopped Node acts on nothing: a deleted pod stays Terminating
        if w is not None:
            w.update(pod)
            return
        phase = pod.get("status", {}).get("phase")
        if pod["metadata"].get("deletionTimestamp") and phase in ("Succeeded", "Failed", None):
            # nothing of ours runs for it: finish the deletion
            await self.ctx.kube.delete(
                f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}",
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": uid},
                },
            )
            return
        if phase in ("Succeeded", "Failed"):
            return
        w = PodWorker(self.ctx, pod)
        self.workers[uid] = w
        w.update(pod)

        def forget(_t: asyncio.Task[None]) -> None:
            self.workers.pop(uid, None)

        w.task.add_done_callback(forget)

    async def _forget(self, pod: Obj) -> None:
        """A pod gone from the API that no worker runs (it was done, or deleted while its Node
        was down): remove its volumes and free its IP, as the kubelet's orphan cleanup does."""
        meta = pod["metadata"]
        d = self.ctx.state_dir / "pods" / pod_dir_name(meta["namespace"], meta["name"], meta["uid"])
        from e2e.localcluster.node import netns

        await asyncio.to_thread(VolumeManager.teardown, d)
        await asyncio.to_thread(netns.release_ips, set(self.pods))

    async def _collect_orphans(self) -> None:
        """After a restart: volumes and IPs of pods deleted while the node agent was down."""
        from e2e.localcluster.node import netns

        root = self.ctx.state_dir / "pods"
        dirs = await asyncio.to_thread(lambda: list(root.glob("*_*_*")) if root.is_dir() else [])
        for d in dirs:
            if d.name.rsplit("_", 1)[-1] not in self.pods and (d / "volumes").exists():
                log.info("pod dir %s: its pod is gone, removing its volumes", d.name)
                await asyncio.to_thread(VolumeManager.teardown, d)
        await asyncio.to_thread(netns.release_ips, set(self.pods))

    async def power_off(self, node: str) -> None:
        self.down.add(node)
        victims = [w for w in self.workers.values() if w.node == node]
        log.warning("node %s stopped (fault): killing %d pods", node, len(victims))
        for w in victims:
            w.power_off()
        await asyncio.gather(*(w.done.wait() for w in victims))
        faults.acknowledge_node_stopped(node)

    async def power_on(self, node: str) -> None:
        log.warning("node %s started again: booting its pods", node)
        self.down.discard(node)
        for pod in [p for p in self.pods.values() if p["spec"].get("nodeName") == node]:
            await self.on_pod("MODIFIED", pod)
        faults.acknowledge_node_started(node)

    async def _power_switches(self) -> None:
        """Follow faults.stop_node/start_node (flag files, so any process can flip them)."""
        while True:
            for node in sorted(self.nodes):
                stopped = faults.node_stopped(node)
                if stopped and node not in self.down:
                    await self.power_off(node)
                elif stopped:
                    faults.acknowledge_node_stopped(node)  # cheap; answers a repeated stop
                elif node in self.down:
                    await self.power_on(node)
            await asyncio.sleep(0.2)

    async def run(self) -> None:
        watch = asyncio.create_task(
            list_watch(self.ctx.kube, "/api/v1/pods", self.on_pod, self.synced)
        )
        switches = asyncio.create_task(self._power_switches())
        try:
            await _first(self.synced.wait(), asyncio.shield(watch))
            if self.synced.is_set():
                await self._collect_orphans()
                self.booted.set()
            await asyncio.gather(watch, switches)
        finally:
            watch.cancel()
            switches.cancel()

    async def shutdown(self) -> None:
        """Stop every pod's processes and clean their networks, leaving the API objects."""
        workers = list(self.workers.values())
        for w in workers:
            w.shutdown()
        await asyncio.gather(*(w.done.wait() for w in workers))


def parse_api_port(server: str) -> int:
    from urllib.parse import urlsplit

    parts = urlsplit(server)
    return parts.port or (443 if parts.scheme == "https" else 80)
