"""The operator's writes to the API server: server-side apply, status patches and Events.

Called by the reconcile orchestration (reconciler.py) only; kopf does the watching. Every write
goes through here, under one field manager, so writes can be counted (operator metrics) and
mapped to domain errors once: a 409/5xx/timeout is "try again" (kopf TemporaryError), a 422 on
a rendered child is a bug or an impossible spec (PermanentError upstream).

Why aiohttp directly rather than a Kubernetes client library: the operator makes five kinds of
request, all on plain dicts (rendered children, merge patches), and the typed clients
(`kubernetes`, `kubernetes_asyncio`) each import thousands of generated model classes — about
45 MB of resident memory apiece, and kopf imports whichever of them is installed. The
credentials are kopf's own (`kopf.ConnectionInfo` from the same login functions kopf uses), so
the operator authenticates one way for its watches and its writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import yaml

from airt_operator.kube.resources import (
    EVENT,
    INFERENCE_RUNTIME,
    MODEL_DEPLOYMENT,
    NAMESPACED_INFERENCE_RUNTIME,
    Kind,
    kind_of,
)
from airt_operator.metrics import OperatorMetrics

FIELD_MANAGER = "airt-operator"
USER_AGENT = "airt-operator/0.1.0"
REQUEST_TIMEOUT_S = 30.0
PING_TIMEOUT_S = 3.0
# Connections to the API server for the operator's own writes: one per reconcile in flight plus
# a few spare (the runtime-status loop). Each TLS connection costs ~0.3 MB (asyncio keeps a
# 256 KiB buffer per SSL transport); unbounded, a burst of 1,000 new ModelDeployments opened
# ~280 of them. Requests beyond the limit wait for a connection.
SPARE_CONNECTIONS = 4
MAX_CONNECTIONS = 32 + SPARE_CONNECTIONS


class KubeError(Exception):
    """A request to the API server failed; `retryable` says whether waiting may help."""

    def __init__(self, message: str, status: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def _error(status: int, text: str, what: str) -> KubeError:
    try:
        message = str(json.loads(text or "{}").get("message") or text)
    except (ValueError, AttributeError):
        message = text
    retryable = status in (0, 408, 409, 429) or status >= 500
    return KubeError(f"{what}: {status} {message[:500]}", status, retryable)


class NoCredentialsError(KubeError):
    """Neither a ServiceAccount token nor a usable kubeconfig: the operator cannot start. The
    message names what was looked for and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message, None, False)


FIX = (
    "set KUBECONFIG to a kubeconfig file (or create ~/.kube/config), or run the operator in a "
    "pod with a ServiceAccount"
)


def _missing_kubeconfigs() -> list[str]:
    """The files KUBECONFIG names that do not exist (kopf would fail on them with a trace)."""
    named = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return [p for p in named if not Path(p).is_file()]


def login() -> kopf.ConnectionInfo:
    """In a pod: the mounted ServiceAccount token; elsewhere: the current kubeconfig.

    The same functions back the operator's kopf login handler (main.py)."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings)
    if info is None:
        missing = _missing_kubeconfigs()
        if missing:
            raise NoCredentialsError(
                f"KUBECONFIG names {', '.join(missing)}, which does not exist: {FIX}"
            )
        try:
            info = kopf.login_with_kubeconfig(settings=settings)
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
            said = " ".join(str(exc).split())  # YAML errors span lines
            raise NoCredentialsError(f"the kubeconfig cannot be read ({said}): {FIX}") from exc
    if info is None:
        raise NoCredentialsError(
            f"no Kubernetes credentials (no ServiceAccount token, no kubeconfig): {FIX}"
        )
    return info


def _session(info: kopf.ConnectionInfo, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, ssl=info.as_ssl_context()),
        headers={**info.as_http_headers(), "User-Agent": USER_AGENT, "Accept": "application/json"},
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )


@dataclass
class Kube:
    """A thin async client for the few calls the operator makes."""

    session: aiohttp.ClientSession
    server: str
    metrics: OperatorMetrics
    relogin: Callable[[], kopf.ConnectionInfo] = login
    connections: int = MAX_CONNECTIONS
    # Told of every answered request (health.py: "the API server is reachable").
    on_success: Callable[[], None] | None = None

    @classmethod
    async def connect(
        cls,
        metrics: OperatorMetrics,
        relogin: Callable[[], kopf.ConnectionInfo] = login,
        connections: int = MAX_CONNECTIONS,
    ) -> Kube:
        info = relogin()
        session = _session(info, connections)
        return cls(session, info.server.rstrip("/"), metrics, relogin, connections)

    async def close(self) -> None:
        await self.session.close()

    async def _renew(self) -> None:
        # A projected ServiceAccount token rotates (about hourly); a 401 means read it again.
        info = self.relogin()
        old, self.session = self.session, _session(info, self.connections)
        self.server = info.server.rstrip("/")
        await old.close()

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
        accept: str = "application/json",
    ) -> Any:
        kind = "write" if method != "GET" else "read"
        data = None if body is None else json.dumps(body)
        for attempt in (1, 2):
            try:
                async with self.session.request(
                    method,
                    self.server + path,
                    params=query or [],
                    data=data,
                    headers={"Content-Type": content_type, "Accept": accept},
                ) as resp:
                    text = await resp.text()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.metrics.api_errors.labels(method=method, status="0").inc()
                raise KubeError(f"{method} {path}: {exc!r}", None, True) from exc
            if status < 500 and self.on_success is not None:
                self.on_success()  # an answer, even a refusal, proves the server is there
            if status == 401 and attempt == 1:
                await self._renew()
                continue
            break
        if status >= 400:
            self.metrics.api_errors.labels(method=method, status=str(status)).inc()
            raise _error(status, text, f"{method} {path}")
        self.metrics.api_requests.labels(method=method, kind=kind).inc()
        return json.loads(text) if text else None

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under the operator's field manager (force: we own these fields —
        the caller has checked that the object is absent or owned, reconcile/ownership.py).

        Apply creates what is missing, so a 404 means the kind itself is not served: a CRD
        that was just established is not in the API server's handlers for a moment. That is
        worth retrying, unlike the 404 of a read."""
        kind = kind_of(manifest)
        meta = manifest["metadata"]
        try:
            result: dict[str, Any] = await self._call(
                "PATCH",
                kind.path(meta.get("namespace"), meta["name"]),
                body=manifest,
                content_type="application/apply-patch+yaml",
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            )
        except KubeError as exc:
            if exc.status == 404:
                raise KubeError(f"{exc} (kind not served yet?)", 404, True) from exc
            raise
        return result

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._call("GET", kind.path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def get_metadata(
        self, kind: Kind, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """One object's metadata only (a PartialObjectMetadata), or None when it is absent: for
        Secrets, whose data the operator must never hold."""
        try:
            result: dict[str, Any] = await self._call(
                "GET",
                kind.path(namespace, name),
                accept="application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(result.get("metadata") or {})

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> None:
        try:
            await self._call("DELETE", kind.path(namespace, name))
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the ModelDeployment's status subresource (never its spec)."""
        result: dict[str, Any] = await self._call(
            "PATCH",
            MODEL_DEPLOYMENT.path(namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        return result

    async def patch_runtime_status(
        self, name: str, status: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch a runtime's status subresource: an InferenceRuntime's, or with a
        namespace a NamespacedInferenceRuntime's."""
        kind = NAMESPACED_INFERENCE_RUNTIME if namespace else INFERENCE_RUNTIME
        result: dict[str, Any] = await self._call(
            "PATCH",
            kind.path(namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        return result

    async def ping(self) -> None:
        """One cheap request (GET /version, readable by every authenticated user) with a short
        timeout: raises KubeError when the API server does not answer."""
        try:
            async with self.session.get(
                self.server + "/version", timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT_S)
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeError(f"GET /version: {exc!r}", None, True) from exc
        if status >= 500:
            raise KubeError(f"GET /version: {status}", status, True)
        if self.on_success is not None:
            self.on_success()

    async def exists(self, path: str) -> bool | None:
        """Whether the object at `path` exists; None when the operator may not read it."""
        try:
            await self._call("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return False
            if exc.status == 403:
                return None
            raise
        return True

    async def event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on the ModelDeployment (kubectl describe shows it)."""
        meta = owner["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": MODEL_DEPLOYMENT.api_version,
                "kind": MODEL_DEPLOYMENT.kind,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": FIELD_MANAGER,
        }
        await self._call("POST", EVENT.path(meta["namespace"]), body=event)
