"""The operator's writes to the API server: server-side apply, status patches and Events.

Called by the reconcile orchestration (reconciler.py) only; kopf does the watching. Every write
goes through here, under one field manager, so writes can be counted (operator metrics) and
mapped to domain errors once: a 409/5xx/timeout is "try again" (kopf TemporaryError), a 422 on
a rendered child is a bug or an impossible spec (PermanentError upstream).

kubernetes_asyncio's generic `call_api` is used instead of its typed per-kind APIs because the
children are plain dicts (rendered from templates) and server-side apply takes them as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from airt_operator.kube.resources import EVENT, INFERENCE_RUNTIME, MODEL_DEPLOYMENT, Kind, kind_of
from airt_operator.metrics import OperatorMetrics

FIELD_MANAGER = "airt-operator"
USER_AGENT = "airt-operator/0.1.0"


class KubeError(Exception):
    """A request to the API server failed; `retryable` says whether waiting may help."""

    def __init__(self, message: str, status: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def _error(exc: ApiException, what: str) -> KubeError:
    status = int(exc.status or 0)
    try:
        message = json.loads(exc.body or "{}").get("message", exc.reason)
    except (ValueError, AttributeError):
        message = str(exc.reason)
    retryable = status in (0, 408, 409, 429) or status >= 500
    return KubeError(f"{what}: {status} {message}", status, retryable)


@dataclass
class Kube:
    """A thin async client for the few calls the operator makes."""

    api: client.ApiClient
    metrics: OperatorMetrics

    @classmethod
    async def connect(cls, metrics: OperatorMetrics) -> Kube:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config()
        api = client.ApiClient()
        api.user_agent = USER_AGENT  # what the API server's audit log attributes writes to
        return cls(api, metrics)

    async def close(self) -> None:
        await self.api.close()

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> Any:
        kind = "write" if method != "GET" else "read"
        try:
            result = await self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                response_types_map={200: "object", 201: "object"},
                _return_http_data_only=True,
            )
        except ApiException as exc:
            self.metrics.api_errors.labels(method=method, status=str(exc.status)).inc()
            raise _error(exc, f"{method} {path}") from exc
        except OSError as exc:  # connection refused, reset, timeouts from aiohttp
            self.metrics.api_errors.labels(method=method, status="0").inc()
            raise KubeError(f"{method} {path}: {exc}", None, True) from exc
        self.metrics.api_requests.labels(method=method, kind=kind).inc()
        return result

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under the operator's field manager (force: we own these fields)."""
        kind = kind_of(manifest)
        meta = manifest["metadata"]
        result: dict[str, Any] = await self._call(
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]),
            body=manifest,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        )
        return result

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._call("GET", kind.path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

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

    async def patch_runtime_status(self, name: str, status: dict[str, Any]) -> None:
        """Merge-patch an InferenceRuntime's status subresource."""
        await self._call(
            "PATCH",
            INFERENCE_RUNTIME.path(None, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    async def crd_exists(self, name: str) -> bool:
        try:
            await self._call(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
        except KubeError as exc:
            if exc.status in (403, 404):
                return False
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
