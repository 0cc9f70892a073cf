"""What /healthz means (airt_operator.health) and the peered operator's start-up check
(airt_operator.main.check_peering).

Unit tier: the health verdict is a pure function of what the operator has seen; the peering
check runs against a stand-in for the API client that answers `exists` from a table.
"""

from __future__ import annotations

import logging
from typing import cast

import pytest

from airt_operator.health import API_FRESH_S, Health, PeeringLogWatcher
from airt_operator.kube.client import Kube
from airt_operator.main import StartupError, check_peering
from airt_operator.settings import OperatorSettings


def test_healthy_only_when_started_synced_and_the_api_answered_lately() -> None:
    h = Health()
    assert any("starting" in p for p in h.problems(now=0))
    h.started = True
    h.api_ok()
    now = h.last_api_ok or 0.0
    assert [p for p in h.problems(now=now) if "synced" in p]
    h.synced = True
    assert h.problems(now=now) == []
    h.api_failed("GET /version: ConnectionRefusedError()")
    late = h.problems(now=now + API_FRESH_S + 1)
    assert late == ["cannot reach the API server: GET /version: ConnectionRefusedError()"]


def test_a_paused_standby_is_healthy_without_syncing() -> None:
    h = Health(started=True)
    h.api_ok()
    logger = logging.getLogger("kopf.test.peering")
    watcher = PeeringLogWatcher(h)
    logger.addHandler(watcher)
    try:
        logger.warning("Pausing operations in favour of [Peer(identity='a', priority=9)].")
        assert h.paused and h.problems() == []
        logger.warning("Resuming operations after the pause. Conflicting operators are gone.")
        assert not h.paused and h.problems()  # active now, and not synced yet
    finally:
        logger.removeHandler(watcher)


class TableKube:
    def __init__(self, present: dict[str, bool | None]) -> None:
        self.present = present
        self.asked: list[str] = []

    async def exists(self, path: str) -> bool | None:
        self.asked.append(path)
        return self.present.get(path, False)


CLUSTER_CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusterkopfpeerings.kopf.dev"


async def test_a_missing_peering_crd_is_a_start_up_error_naming_the_fix() -> None:
    kube = TableKube({})
    with pytest.raises(StartupError, match=r"clusterkopfpeerings\.kopf\.dev is not installed") as e:
        await check_peering(cast(Kube, kube), OperatorSettings(standalone=False))
    assert "--standalone" in str(e.value) and "kopf-peering.yaml" in str(e.value)


async def test_a_missing_peering_object_is_a_start_up_error() -> None:
    kube = TableKube({CLUSTER_CRD: True})
    with pytest.raises(StartupError, match="clusterkopfpeerings/airt does not exist"):
        await check_peering(cast(Kube, kube), OperatorSettings(standalone=False))
    ok = TableKube({CLUSTER_CRD: True, "/apis/kopf.dev/v1/clusterkopfpeerings/airt": True})
    await check_peering(cast(Kube, ok), OperatorSettings(standalone=False))


async def test_a_namespaced_operator_checks_its_kopfpeerings() -> None:
    crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/kopfpeerings.kopf.dev"
    kube = TableKube({crd: True, "/apis/kopf.dev/v1/namespaces/a/kopfpeerings/airt": True})
    with pytest.raises(StartupError, match="namespaces/b/kopfpeerings/airt"):
        await check_peering(cast(Kube, kube), OperatorSettings(namespaces=["a", "b"]))
