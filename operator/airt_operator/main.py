"""The operator's composition root: settings → client → reconciler → kopf handlers → run.

Called by `airt operator run` (cli.py). Builds every piece once, configures kopf (peering,
where its own bookkeeping lives, posting), serves /metrics and /healthz, and runs kopf's
asyncio operator until it is stopped.

The JSON log formatter is ten lines here rather than a dependency: the operator image stays
small, and the fields are the few a log pipeline needs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from airt_operator.handlers import World, register
from airt_operator.kube.client import SPARE_CONNECTIONS, Kube
from airt_operator.kube.client import login as kube_login
from airt_operator.metrics import OperatorMetrics
from airt_operator.reconcile.build import BuildSettings
from airt_operator.reconciler import Reconciler
from airt_operator.settings import OperatorSettings
from airt_operator.workqueue import Backoff


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _configure_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def _serve_http(metrics: OperatorMetrics, port: int, ready: asyncio.Event) -> web.AppRunner:
    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def health_view(_: web.Request) -> web.Response:
        if ready.is_set():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "starting"}, status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", health_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


async def run_operator(settings: OperatorSettings) -> None:
    _configure_logging(settings.log_format)
    metrics = OperatorMetrics()
    kube = await Kube.connect(
        metrics, connections=settings.max_concurrent_reconciles + SPARE_CONNECTIONS
    )
    reconciler = Reconciler(
        kube,
        metrics,
        BuildSettings(
            metrics_image=settings.metrics_image,
            fetcher_image=settings.fetcher_image,
            monitoring_namespace=settings.monitoring_namespace,
            drain_seconds=settings.drain_seconds,
        ),
        resync_seconds=settings.resync_seconds,
        max_concurrent=settings.max_concurrent_reconciles,
    )
    registry = kopf.OperatorRegistry()
    register(
        registry,
        reconciler,
        World(),
        clusterwide=not settings.namespaces,
        workers=settings.max_concurrent_reconciles,
        backoff=Backoff(settings.retry_base_seconds, settings.retry_max_seconds),
    )
    ready = asyncio.Event()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf's own bookkeeping goes to annotations under airt.dev: the status schema is
        # ours (structural, pruned), and the spec is never touched.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="airt.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="airt.dev", key="last-handled-configuration"
        )
        settings.posting.enabled = False  # Events are ours, one per condition transition
        settings.watching.server_timeout = 300
        # No batching.worker_limit: with indices, kopf deadlocks at start-up when more objects
        # of one kind exist than the limit allows workers (each indexed worker waits for all
        # the others; nolar/kopf#1243) — an operator restart with 1,000 ModelDeployments hung.
        # Replicas with equal priority all pause in kopf peering; a random priority makes
        # one active and the others standbys that take over when it goes away.
        settings.peering.priority = random.randint(1, 2**31 - 1)
        if not settings.peering.standalone:
            logging.getLogger("airt.operator").info(
                "peering %r with priority %d", settings.peering.name, settings.peering.priority
            )
        ready.set()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as the operator's own writes (kube/client.py).
        return kube_login()

    runner = await _serve_http(metrics, settings.health_port, ready)
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=settings.standalone,
            # Naming a peering makes it mandatory in kopf; a standalone operator names none.
            peering_name=None if settings.standalone else settings.peering_name,
        )
    finally:
        await runner.cleanup()
        await kube.close()


def main(settings: OperatorSettings) -> int:
    asyncio.run(run_operator(settings))
    return 0
