"""The operator's composition root: settings → client → reconciler → kopf handlers → run.

Called by `airt-operator run` (cli.py). Builds every piece once, checks that a peered
operator's peering exists (a loud start-up error naming the fix, rather than kopf's silent
wait), configures kopf (peering, where its own bookkeeping lives, posting), serves /metrics and
/healthz (health.py), and runs kopf's asyncio operator until it is stopped.

The JSON log formatter is ten lines here rather than a dependency: the operator image stays
small, and the fields are the few a log pipeline needs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from airt_operator.handlers import register
from airt_operator.health import Health, PeeringLogWatcher
from airt_operator.kube.client import SPARE_CONNECTIONS, Kube, KubeError, NoCredentialsError
from airt_operator.kube.client import login as kube_login
from airt_operator.metrics import OperatorMetrics
from airt_operator.reconcile.build import BuildSettings
from airt_operator.reconciler import Reconciler
from airt_operator.settings import OperatorSettings
from airt_operator.tracing import start_tracer
from airt_operator.workqueue import Backoff

log = logging.getLogger("airt.operator")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the worker's and the sidecar's field names (time,
    level, logger, message, exception), so one log pipeline rule reads all three."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _configure_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def _serve_http(
    metrics: OperatorMetrics, port: int, health: Health, kube: Kube
) -> web.AppRunner:
    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def health_view(_: web.Request) -> web.Response:
        if not health.api_fresh():
            # Nothing answered lately (a quiet steady state, or an outage): ask once.
            try:
                await kube.ping()
            except KubeError as exc:
                health.api_failed(str(exc))
        problems = health.problems()
        if problems:
            return web.json_response({"status": "unhealthy", "problems": problems}, status=503)
        return web.json_response({"status": "ok", "paused": health.paused})

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", health_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


class StartupError(Exception):
    """The operator cannot work as configured; the message says how to fix it."""


async def check_peering(kube: Kube, settings: OperatorSettings) -> None:
    """Refuse to start a peered operator whose peering cannot exist.

    Without the peering CRD, kopf pauses every watch and waits for it to appear, silently: the
    operator looked healthy and did nothing. A missing peering object is the same trap."""
    name = settings.peering_name
    if settings.namespaces:
        crd, kind = "kopfpeerings.kopf.dev", "KopfPeering"
        paths = [
            f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/{name}" for ns in settings.namespaces
        ]
    else:
        crd, kind = "clusterkopfpeerings.kopf.dev", "ClusterKopfPeering"
        paths = [f"/apis/kopf.dev/v1/clusterkopfpeerings/{name}"]
    fix = (
        "install the chart's peering CRDs (charts/airt/crds/kopf-peering.yaml) and create the "
        f"{kind} {name!r} (the chart does both), or run one replica with --standalone"
    )
    found = await kube.exists(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
    if found is False:
        raise StartupError(f"peering is on, but the CRD {crd} is not installed: {fix}")
    if found is None:
        log.warning("cannot read CRD %s to check peering (forbidden); assuming it exists", crd)
        return
    for path in paths:
        if await kube.exists(path) is False:
            raise StartupError(f"peering is on, but {path} does not exist: {fix}")


async def run_operator(settings: OperatorSettings) -> None:
    _configure_logging(settings.log_format)
    metrics = OperatorMetrics()
    # kopf starts a peered operator paused (its peering toggles are pre-activated) and logs
    # only when it resumes: a standby never says it is paused.
    health = Health(paused=not settings.standalone)
    kube = await Kube.connect(
        metrics, connections=settings.max_concurrent_reconciles + SPARE_CONNECTIONS
    )
    kube.on_success = health.api_ok
    logging.getLogger("kopf").addHandler(PeeringLogWatcher(health))
    if not settings.standalone:
        try:
            await check_peering(kube, settings)
        except StartupError:
            await kube.close()
            raise
    traced = start_tracer()
    reconciler = Reconciler(
        kube,
        metrics,
        BuildSettings.from_settings(settings),
        resync_seconds=settings.resync_seconds,
        max_concurrent=settings.max_concurrent_reconciles,
        tracer=traced[0] if traced else None,
    )
    registry = kopf.OperatorRegistry()
    register(
        registry,
        reconciler,
        clusterwide=not settings.namespaces,
        workers=settings.max_concurrent_reconciles,
        backoff=Backoff(settings.retry_base_seconds, settings.retry_max_seconds),
        health=health,
    )

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
            log.info(
                "peering %r with priority %d", settings.peering.name, settings.peering.priority
            )
        health.started = True

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as the operator's own writes (kube/client.py).
        return kube_login()

    runner = await _serve_http(metrics, settings.health_port, health, kube)
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
        if traced is not None:
            traced[1].shutdown()  # exports the spans still buffered


def main(settings: OperatorSettings) -> int:
    try:
        asyncio.run(run_operator(settings))
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return 2
    except NoCredentialsError as exc:
        # Before logging is useful: one plain line for the person at the terminal.
        print(f"airt-operator: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0
