"""One container of a pod, run as its restart policy says: prepare (image, argv, env, mounts),
start through the sandbox, probe, restart with the crash-loop backoff, stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from e2e.localcluster.node import pods as podlib
from e2e.localcluster.node.images import ImageNotFound, container_argv, resolve_program
from e2e.localcluster.node.pods import ContainerRecord, EnvError
from e2e.localcluster.node.probes import Probe, ProbeCounter, check
from e2e.localcluster.node.volumes import VolumeNotReady, container_mounts

if TYPE_CHECKING:
    from e2e.localcluster.node.kubelet import PodWorker

log = logging.getLogger("etcdop.localnode.kubelet")

RETRY_START = 2.0


class ContainerRunner:
    """Runs one container, again and again as its restart policy says, with probes."""

    def __init__(self, worker: PodWorker, spec: Mapping[str, Any], rec: ContainerRecord) -> None:
        self.worker = worker
        self.spec = spec
        self.rec = rec
        self.running: Any = None  # proc.Running while a process lives
        self.exit_task: asyncio.Future[int] | None = None  # its one wait()
        self.stopping = False
        self.started = asyncio.Event()  # startup done (gates the next init container)
        self.finished = asyncio.Event()  # will not run again
        self.failures = 0  # consecutive, for the backoff
        self._kill_reason = ""
        self.task: asyncio.Task[None] | None = None
        self.ran = False  # a container of this name was created before (restartCount grows)
        self.skip = False  # resumed after a node restart with a run that is over for good
        self.log_path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def _dir(self) -> Path:
        return self.worker.dir / "containers" / self.name

    def _termination_log(self) -> Path:
        return self._dir() / "termination-log"

    async def _prepare(self, attempt: int) -> Any:
        """Everything needed to start a process: image, argv, env, mounts -> a ContainerSpec.
        The env is resolved from the pod as it is now (annotations patched since the last
        run included), as the kubelet does for every container it creates."""
        from e2e.localcluster.node import proc

        w = self.worker
        image = w.ctx.images.resolve(self.spec.get("image", ""))
        env = await w.env_for(self.spec, image.path)
        command = [podlib.expand(a, env) for a in self.spec.get("command") or []]
        args = [podlib.expand(a, env) for a in self.spec.get("args") or []]
        argv = container_argv(image, command, args)
        if not argv:
            raise EnvError(
                f"container {self.name!r}: no command given and image "
                f"{image.ref!r} has no entrypoint"
            )
        argv[0] = resolve_program(argv[0], image)
        mounts = [
            proc.Mount(source=m.source, target=m.target, read_only=m.read_only)
            for m in container_mounts(self.spec, w.vols.sources if w.vols else {}, env)
        ]
        d = self._dir()
        d.mkdir(parents=True, exist_ok=True)
        target = self.spec.get("terminationMessagePath") or "/dev/termination-log"
        if all(PurePosixPath(m.target) != PurePosixPath(target) for m in mounts):
            # an empty file per run, mounted where the container may write its last words
            self._termination_log().write_bytes(b"")
            mounts.append(proc.Mount(source=str(self._termination_log()), target=target))
        self.log_path = d / f"{attempt}.log"
        fields = {f.name for f in dataclasses.fields(proc.ContainerSpec)}
        kw: dict[str, Any] = {
            "argv": argv,
            "env": env,
            "path": list(image.path),
            "netns": w.network.netns,
            "hostname": w.hostname,
            "mounts": mounts,
            "workdir": self.spec.get("workingDir"),
            "log_path": str(self.log_path),
            "name": self.name,
            "namespace": w.ns,
            "subdomain": w.pod["spec"].get("subdomain") or "",
            "extra_hosts": host_aliases(w.pod),
        }
        return proc.ContainerSpec(**{k: v for k, v in kw.items() if k in fields})

    async def _start(self) -> str:
        """Start one run: "started"; "waiting" when no container could be created (reason
        recorded, no attempt used); "failed" when it was created but could not start."""
        from e2e.localcluster.node import proc

        attempt = self.rec.restart_count + (1 if self.ran else 0)
        try:
            spec = await self._prepare(attempt)
        except ImageNotFound as e:
            reason = "ErrImagePull" if self.failures == 0 else "ImagePullBackOff"
            self.rec.retire()
            self.rec.waiting(reason, str(e))
            return "waiting"
        except EnvError as e:
            self.rec.retire()
            self.rec.waiting("CreateContainerConfigError", str(e))
            return "waiting"
        except (VolumeNotReady, ValueError) as e:
            self.rec.retire()
            self.rec.waiting("CreateContainerError", str(e))
            return "waiting"
        if self.ran:
            self.rec.next_attempt()
        self.ran = True
        try:
            self.running = await proc.start_container(spec)
        except Exception as e:  # the sandbox reports any start failure as an exception
            log.warning("pod %s container %s failed to start: %s", self.worker.key, self.name, e)
            self.rec.running("")
            self.rec.terminated(128, "StartError", str(e))
            return "failed"
        self.exit_task = asyncio.ensure_future(self.running.wait())
        cid = f"local://{self.worker.uid[:8]}-{self.name}-{self.rec.restart_count}"
        self.rec.running(cid)
        (self._dir() / "pid").write_text(str(self.running.pid))
        self.worker.write_info()
        return "started"

    async def _probe_loop(self) -> None:
        """Startup first; then readiness and liveness side by side. Sets _kill_reason and kills
        the process when startup or liveness fails past its threshold."""
        w = self.worker
        startup = Probe.from_spec(self.spec.get("startupProbe"))
        readiness = Probe.from_spec(self.spec.get("readinessProbe"))
        liveness = Probe.from_spec(self.spec.get("livenessProbe"))
        running = self.running

        async def exec_fn(argv: list[str], seconds: float) -> tuple[int, str]:
            from e2e.localcluster.node import proc

            result: tuple[int, str] = await proc.exec_in_container(running, argv, seconds)
            return result

        async def once(p: Probe) -> bool:
            ok, msg = await check(p, self.spec, w.network.ip, exec_fn)
            if not ok:
                log.info("pod %s container %s probe failed: %s", w.key, self.name, msg)
            return ok

        if startup is not None:
            await asyncio.sleep(startup.initial_delay)
            counter = ProbeCounter(startup, initial=False)
            while True:
                counter.observe(await once(startup))
                if counter.ok:
                    break
                if counter.failed:
                    await self._kill("startup probe failed")
                    return
                await asyncio.sleep(startup.period)
        self.rec.started = True
        self.started.set()
        if readiness is None:
            self.rec.ready = True
        w.mark_dirty()

        async def ready_loop(p: Probe) -> None:
            await asyncio.sleep(p.initial_delay)
            counter = ProbeCounter(p, initial=False)
            while True:
                ok = counter.observe(await once(p))
                if ok != self.rec.ready:
                    self.rec.ready = ok
                    w.mark_dirty()
                await asyncio.sleep(p.period)

        async def live_loop(p: Probe) -> None:
            await asyncio.sleep(p.initial_delay)
            counter = ProbeCounter(p, initial=True)
            while True:
                counter.observe(await once(p))
                if counter.failed:
                    await self._kill("liveness probe failed")
                    return
                await asyncio.sleep(p.period)

        async with asyncio.TaskGroup() as tg:
            if readiness is not None:
                tg.create_task(ready_loop(readiness))
            if liveness is not None:
                tg.create_task(live_loop(liveness))

    async def _kill(self, reason: str) -> None:
        log.info("pod %s container %s: %s, killing it", self.worker.key, self.name, reason)
        self._kill_reason = reason
        await self.terminate(self.worker.grace_seconds())

    async def _pre_stop(self, running: Any, seconds: float) -> None:
        """lifecycle.preStop (exec, httpGet or sleep), bounded by the grace period."""
        hook = (self.spec.get("lifecycle") or {}).get("preStop")
        if not hook or seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                if "sleep" in hook:
                    await asyncio.sleep(float(hook["sleep"].get("seconds", 0)))
                    return

                async def exec_fn(argv: list[str], limit: float) -> tuple[int, str]:
                    from e2e.localcluster.node import proc

                    result: tuple[int, str] = await proc.exec_in_container(running, argv, limit)
                    return result

                ok, msg = await check(
                    Probe(handler=hook, timeout=seconds), self.spec, self.worker.network.ip, exec_fn
                )
                if not ok:
                    log.info(
                        "pod %s container %s: preStop hook failed: %s",
                        self.worker.key,
                        self.name,
                        msg,
                    )
        except TimeoutError:
            log.info(
                "pod %s container %s: preStop hook ran out of the grace period",
                self.worker.key,
                self.name,
            )

    async def terminate(self, grace: float, hooks: bool = True) -> None:
        """preStop hook, SIGTERM, the rest of GRACE seconds, then SIGKILL to the whole tree."""
        running, exit_task = self.running, self.exit_task
        if running is None or exit_task is None:
            return
        if grace <= 0 and not hooks:  # its node died: no SIGTERM, no grace
            await kill_tree(running)
            return
        deadline = time.monotonic() + grace
        if hooks:
            await self._pre_stop(running, grace)
        with contextlib.suppress(ProcessLookupError, OSError):
            running.signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                await asyncio.shield(exit_task)
        except TimeoutError:
            log.info(
                "pod %s container %s ignored SIGTERM for %.0fs: SIGKILL",
                self.worker.key,
                self.name,
                grace,
            )
        await kill_tree(running)

    def _message(self, code: int) -> str:
        """terminated.message: the termination-log file, or the log tail on error
        (FallbackToLogsOnError), else why we killed it (a failed probe)."""
        policy = self.spec.get("terminationMessagePolicy") or "File"
        try:
            written = self._termination_log().read_bytes()
        except OSError:
            written = b""
        log_data = b""
        if self.log_path is not None and policy == "FallbackToLogsOnError" and code != 0:
            log_data = read_tail(self.log_path, 64 * 1024)
        return podlib.termination_message(written, policy, code, log_data) or self._kill_reason

    async def run_once(self) -> int | None:
        """One run of the container; its exit code, or None when no container could be made."""
        outcome = await self._start()
        if outcome != "started":
            self.worker.mark_dirty()
            return None if outcome == "waiting" else 128
        self.worker.mark_dirty()
        self._kill_reason = ""
        running, exit_task = self.running, self.exit_task
        assert exit_task is not None
        if self.stopping:  # the pod began stopping while this run was starting
            await self.terminate(0, hooks=False)
        t0 = time.monotonic()
        probes = asyncio.create_task(self._probe_loop())
        try:
            code = await asyncio.shield(exit_task)
        finally:
            probes.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await probes
            await kill_tree(running)  # nothing of a run outlives it
        self.running = None
        self.started.clear()
        self.rec.terminated(code, None, await asyncio.to_thread(self._message, code))
        if time.monotonic() - t0 >= podlib.BACKOFF_RESET_AFTER:
            self.failures = 0
        log.info("pod %s container %s exited with %s", self.worker.key, self.name, code)
        self.worker.mark_dirty()
        return code

    async def supervise(self) -> None:
        """Run until the restart policy says stop (or the pod stops us)."""
        policy = self.worker.pod["spec"].get("restartPolicy", "Always")
        try:
            if self.skip:
                return
            while not self.stopping:
                code = await self.run_once()
                if self.stopping:
                    break
                if code is not None and not podlib.should_restart(self.rec.kind, policy, code):
                    if self.rec.kind == "init" and code == 0:
                        self.rec.completed = True
                    self.rec.wants_restart = False
                    break
                self.failures += 1
                delay = podlib.restart_delay(self.failures)
                if code is None:
                    # could not start: waiting reason already set; retry with the same backoff
                    delay = max(delay, RETRY_START)
                else:
                    if delay > 0:
                        self.rec.retire()
                        self.rec.waiting(
                            "CrashLoopBackOff",
                            f"back-off {delay:.0f}s restarting failed container="
                            f"{self.name} pod={self.worker.name}",
                        )
                    self.worker.mark_dirty()
                await self.worker.sleep_unless_stopping(delay)
        finally:
            self.finished.set()
            self.worker.mark_dirty()


def read_tail(path: Path, size: int) -> bytes:
    """The last SIZE bytes of PATH (empty when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read()
    except OSError:
        return b""


async def kill_tree(running: Any) -> None:
    """SIGKILL whatever is left of a container (blocking in the sandbox: run in a thread)."""
    try:
        await asyncio.to_thread(running.kill_tree)
    except (ProcessLookupError, OSError, RuntimeError) as e:
        log.warning("%r: kill failed: %s", running, e)


def host_aliases(pod: Mapping[str, Any]) -> dict[str, list[str]]:
    return {a["ip"]: list(a.get("hostnames", [])) for a in pod["spec"].get("hostAliases") or []}
