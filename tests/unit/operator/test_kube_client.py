"""The operator's API client (airt_operator.kube.client) against a local HTTP server.

Unit tier: an aiohttp server on loopback stands in for the API server, so what is checked is
what goes over the wire — the credentials, the content types of server-side apply and merge
patches, re-login on 401 (a rotated ServiceAccount token) and the mapping of failures to
retryable or permanent KubeErrors.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from aiohttp import web

from airt_operator.kube.client import FIELD_MANAGER, USER_AGENT, Kube, KubeError
from airt_operator.kube.resources import SERVICE_ACCOUNT
from airt_operator.metrics import OperatorMetrics


class FakeApiServer:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.reject_first = 0  # answer 401 to this many requests
        self.status = 200
        self.body: dict[str, Any] = {"kind": "ServiceAccount", "metadata": {"name": "m"}}

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "auth": request.headers.get("Authorization"),
                "agent": request.headers.get("User-Agent"),
                "type": request.headers.get("Content-Type"),
                "body": await request.text(),
            }
        )
        if self.reject_first > 0:
            self.reject_first -= 1
            return web.json_response({"message": "Unauthorized"}, status=401)
        if self.status != 200:
            return web.json_response({"message": "the reason it failed"}, status=self.status)
        return web.json_response(self.body)


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeApiServer, str]]:
    fake = FakeApiServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _logins(server: str) -> Any:
    count = 0

    def login() -> kopf.ConnectionInfo:
        nonlocal count
        count += 1
        return kopf.ConnectionInfo(server=server, token=f"token-{count}")

    return login


async def test_apply_is_a_forced_server_side_apply_under_our_field_manager(
    api: tuple[FakeApiServer, str],
) -> None:
    fake, server = api
    kube = await Kube.connect(OperatorMetrics(), relogin=_logins(server))
    try:
        manifest = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "m", "namespace": "ns"},
        }
        result = await kube.apply(manifest)
    finally:
        await kube.close()
    assert result["metadata"]["name"] == "m"
    (req,) = fake.seen
    assert req["method"] == "PATCH"
    assert req["path"] == "/api/v1/namespaces/ns/serviceaccounts/m"
    assert req["query"] == {"fieldManager": FIELD_MANAGER, "force": "true"}
    assert req["type"] == "application/apply-patch+yaml"
    assert json.loads(req["body"]) == manifest
    assert req["auth"] == "Bearer token-1"
    assert req["agent"] == USER_AGENT


async def test_a_401_logs_in_again_and_retries_once(api: tuple[FakeApiServer, str]) -> None:
    fake, server = api
    fake.reject_first = 1  # the token rotated under us
    kube = await Kube.connect(OperatorMetrics(), relogin=_logins(server))
    try:
        got = await kube.get(SERVICE_ACCOUNT, "ns", "m")
    finally:
        await kube.close()
    assert got is not None
    assert [r["auth"] for r in fake.seen] == ["Bearer token-1", "Bearer token-2"]


async def test_status_patch_is_a_merge_patch_of_the_status_subresource(
    api: tuple[FakeApiServer, str],
) -> None:
    fake, server = api
    kube = await Kube.connect(OperatorMetrics(), relogin=_logins(server))
    try:
        await kube.patch_status("ns", "m", {"replicas": 1})
    finally:
        await kube.close()
    (req,) = fake.seen
    assert req["path"] == "/apis/airt.dev/v1alpha1/namespaces/ns/modeldeployments/m/status"
    assert req["type"] == "application/merge-patch+json"
    assert json.loads(req["body"]) == {"status": {"replicas": 1}}


@pytest.mark.parametrize(
    ("status", "retryable"),
    # 404 on an apply (which creates what is missing): the kind is not served yet, e.g. a CRD
    # established a moment ago — worth retrying.
    [(409, True), (429, True), (503, True), (404, True), (422, False), (403, False)],
)
async def test_failures_map_to_retryable_or_permanent_errors_with_the_servers_message(
    api: tuple[FakeApiServer, str], status: int, retryable: bool
) -> None:
    fake, server = api
    fake.status = status
    kube = await Kube.connect(OperatorMetrics(), relogin=_logins(server))
    try:
        with pytest.raises(KubeError) as caught:
            await kube.apply(
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "m"}}
            )
    finally:
        await kube.close()
    assert caught.value.status == status
    assert caught.value.retryable is retryable
    assert "the reason it failed" in str(caught.value)


async def test_a_missing_object_is_none_and_an_unreachable_server_is_retryable(
    api: tuple[FakeApiServer, str],
) -> None:
    fake, server = api
    fake.status = 404
    kube = await Kube.connect(OperatorMetrics(), relogin=_logins(server))
    try:
        assert await kube.get(SERVICE_ACCOUNT, "ns", "gone") is None
    finally:
        await kube.close()
    # Nothing listens on port 1 of loopback: connection refused.
    down = await Kube.connect(OperatorMetrics(), relogin=_logins("http://127.0.0.1:1"))
    try:
        with pytest.raises(KubeError) as caught:
            await down.get(SERVICE_ACCOUNT, "ns", "m")
    finally:
        await down.close()
    assert caught.value.retryable is True
    assert caught.value.status is None
