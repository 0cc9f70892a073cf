"""Fault injection for the local control plane: stop and restart its components, and put a
proxy between the operator and the API server that answers chosen requests with errors.

Called by the cluster tier's fault tests (tests/cluster/test_faults.py) and by the heavier fault
runs in bench/faults.py. Nothing here runs in production.

- `Component`: a kwokctl binary-runtime process (kube-apiserver, etcd, ...). kwokctl starts each
  one as a plain process and records its pid under `<workdir>/pids/`; stopping one is a SIGKILL,
  and starting it again re-runs the very command line, working directory and environment read
  from /proc before the kill, with the new pid written back so `kwokctl delete cluster` still
  stops it. (kwokctl 0.7 has no per-component stop or start.)
- `FaultProxy`: plain HTTP on loopback in front of the API server's TLS port, authenticated to
  it with the cluster's admin pair. The operator is pointed at it with a kubeconfig of its own.
  A fault names a method and a path pattern and what to answer instead (a status code with a
  Kubernetes Status body, or a reset connection) for a number of matching requests; every
  request is counted, so a test can say how often the operator tried.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from airt_dev.cluster import Cluster
from airt_dev.wait import wait_for


@dataclass
class Component:
    """One control-plane process of a kwokctl cluster, by its name in `<workdir>/pids/`."""

    cluster: Cluster
    name: str
    _argv: list[str] = field(default_factory=list)
    _cwd: str = ""
    _env: dict[str, str] = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return self.cluster.workdir / "pids" / f"{self.name}.pid"

    def pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def remember(self) -> None:
        """Record how the running process was started (from /proc), to start it again."""
        proc = Path(f"/proc/{self.pid()}")
        self._argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        self._cwd = str((proc / "cwd").readlink())
        raw = (proc / "environ").read_bytes().split(b"\0")
        self._env = dict(e.decode().split("=", 1) for e in raw if b"=" in e)

    def alive(self) -> bool:
        proc = Path(f"/proc/{self.pid()}")
        return proc.exists() and not _zombie(proc)

    def kill(self) -> None:
        """SIGKILL the process (no graceful shutdown), remembering how to start it again."""
        self.remember()
        os.kill(self.pid(), signal.SIGKILL)
        wait_for(lambda: not self.alive(), 30, f"{self.name} to exit")

    def start(self) -> None:
        """Start the process again as it was started before `kill()`."""
        if not self._argv:
            raise RuntimeError(f"{self.name} was not stopped by this object")
        log = (self.cluster.workdir / "logs" / f"{self.name}.log").open("ab")
        proc = subprocess.Popen(
            self._argv,
            cwd=self._cwd,
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this test process, like kwokctl's own children
        )
        log.close()
        self.pid_file.write_text(str(proc.pid))

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Until the API server answers /readyz (for any component: the cluster works again)."""

        def ready() -> bool:
            proc = self.cluster.kubectl("get", "--raw=/readyz", check=False)
            return proc.returncode == 0 and proc.stdout.strip() == "ok"

        wait_for(ready, timeout_s, f"the API server to be ready after restarting {self.name}")


@dataclass
class ControlPlane:
    """Every component of the cluster, remembered while all run, so that those that exit on
    their own during a fault can be started again — as a kubelet or systemd restarts them in
    a real cluster. (kube-controller-manager and kube-scheduler exit when they cannot renew
    their leader lease, which an API server outage of more than a few seconds causes.)"""

    cluster: Cluster
    components: dict[str, Component] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for pid_file in sorted((self.cluster.workdir / "pids").glob("*.pid")):
            c = Component(self.cluster, pid_file.stem)
            c.remember()
            self.components[c.name] = c

    def __getitem__(self, name: str) -> Component:
        return self.components[name]

    def revive(self) -> list[str]:
        """Start every component that is not running; returns their names."""
        dead = [c for c in self.components.values() if not c.alive()]
        for c in dead:
            c.start()
        return [c.name for c in dead]


def _zombie(proc: Path) -> bool:
    try:
        return " Z " in (proc / "stat").read_text()
    except OSError:
        return True


@dataclass
class Fault:
    """Answer `times` requests matching `method` and `path` (a regex searched in the path and
    query) with `status` (or a reset connection when status is 0)."""

    method: str
    path: str
    status: int
    times: int = 1_000_000

    def matches(self, method: str, target: str) -> bool:
        return method == self.method and re.search(self.path, target) is not None


class FaultProxy:
    """A loopback HTTP proxy to the cluster's API server that injects faults; runs in a thread."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        entry = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.upstream = str(entry["server"]).rstrip("/")
        self._ssl = ssl.create_default_context(cafile=entry["certificate-authority"])
        self._ssl.load_cert_chain(user["client-certificate"], user["client-key"])
        self.faults: list[Fault] = []
        self.seen: Counter[tuple[str, str]] = Counter()  # (method, path) -> requests
        self.injected: Counter[tuple[str, int]] = Counter()  # (method, status) -> answers
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(30)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._session is not None:
                await self._session.close()
            # Watches still being relayed: cancel them, so the loop stops with nothing pending.
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def count(self, method: str, pattern: str) -> int:
        with self._lock:
            return sum(
                n for (m, p), n in self.seen.items() if m == method and re.search(pattern, p)
            )

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig that reaches the API server through this proxy (no credentials: the
        proxy holds them)."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
                    ],
                    "users": [{"name": "proxy", "user": {}}],
                    "contexts": [
                        {"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}
                    ],
                    "current-context": "proxy",
                }
            )
        )
        return path

    async def _serve(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Open watches are cut at stop, not waited for (the default waits a minute).
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def _fault_for(self, method: str, target: str) -> Fault | None:
        with self._lock:
            self.seen[(method, target.split("?", 1)[0])] += 1
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, target):
                    fault.times -= 1
                    self.injected[(method, fault.status)] += 1
                    return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        target = request.path_qs
        fault = self._fault_for(request.method, target)
        if fault is not None:
            if fault.status == 0:
                if request.transport is not None:
                    request.transport.abort()  # a reset connection: no answer at all
                return web.Response(status=500)
            return web.json_response(_status_body(fault.status), status=fault.status)
        assert self._session is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "authorization", "content-length", "connection")
        }
        body = await request.read()
        try:
            upstream = await self._session.request(
                request.method, self.upstream + target, data=body or None, headers=headers
            )
        except (aiohttp.ClientError, OSError):
            return web.json_response(_status_body(503), status=503)
        async with upstream:
            response = web.StreamResponse(status=upstream.status)
            for k, v in upstream.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    response.headers[k] = v
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)  # watch streams: each event as it comes
                await response.write_eof()
            except (aiohttp.ClientError, ConnectionError):
                pass  # either side went away mid-stream: the client sees a cut watch
            return response


def _status_body(code: int) -> dict[str, Any]:
    reasons = {
        409: "Conflict",
        429: "TooManyRequests",
        500: "InternalError",
        503: "ServiceUnavailable",
        422: "Invalid",
    }
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": f"injected fault: {code}",
        "reason": reasons.get(code, "Unknown"),
        "code": code,
    }
