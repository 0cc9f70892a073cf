"""The operator never takes over what it does not own, and owes every Event it decided to send
(even for a status write whose answer was lost).

Unit tier: the pure ownership rule (airt_operator.reconcile.ownership) and one Reconciler
driven with a Snapshot and an in-memory stand-in for the API client, so what is checked is
which requests a reconcile would send — none to a foreign object — and what status it writes.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from airt_operator.kube.client import Kube, KubeError
from airt_operator.kube.resources import Kind
from airt_operator.metrics import OperatorMetrics
from airt_operator.reconcile import observe
from airt_operator.reconcile.build import BuildSettings
from airt_operator.reconcile.ownership import conflict_of, owned_by
from airt_operator.reconciler import Reconciler, Result, Snapshot

ROOT = Path(__file__).resolve().parents[3]
UID = "1111-aaaa"


class FakeKube:
    """Objects by (kind, namespace, name); records every write; can fail Event POSTs."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.events: list[str] = []
        self.fail_events = 0
        # Status PATCHes to fail: "lost" lands the write then fails (its answer lost),
        # "refused" fails without writing.
        self.fail_status: list[str] = []
        self.status: dict[str, Any] = {}
        self.version = 100

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind.kind, namespace or "", name))

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        self.writes.append(("apply", manifest["kind"], meta["name"]))
        self.version += 1
        obj = copy.deepcopy(manifest)
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[(manifest["kind"], meta["namespace"], meta["name"])] = obj
        return obj

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> None:
        self.writes.append(("delete", kind.kind, name))

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        failure = self.fail_status.pop(0) if self.fail_status else None
        if failure == "refused":
            raise KubeError("PATCH status: 503 unavailable", 503, True)
        self.writes.append(("status", "ModelDeployment", name))
        self.status = copy.deepcopy(status)
        self.version += 1
        if failure == "lost":
            raise KubeError("PATCH status: connection reset by peer", None, True)
        return {"metadata": {"resourceVersion": str(self.version)}, "status": status}

    async def event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None:
        if self.fail_events > 0:
            self.fail_events -= 1
            raise KubeError("POST events: 503 unavailable", 503, True)
        self.events.append(reason)


def _model() -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "examples" / "deployments" / "cpu-mlp.yaml").read_text())
    raw["metadata"] = {
        "name": raw["metadata"]["name"],
        "namespace": "team",
        "uid": UID,
        "generation": 1,
        "resourceVersion": "1",
    }
    return dict(raw)


def _snapshot(body: dict[str, Any]) -> Snapshot:
    runtimes = [
        yaml.safe_load(p.read_text())
        for p in sorted((ROOT / "examples" / "runtimes").glob("*.yaml"))
    ]
    return Snapshot(body, runtimes, {}, [], [], service_monitor_crd=False)


def _reconciler(kube: FakeKube) -> Reconciler:
    return Reconciler(cast(Kube, kube), OperatorMetrics(), BuildSettings.defaults())


def _setup() -> tuple[FakeKube, dict[str, Any], str, Reconciler]:
    """An in-memory API, the example model, its name, and a reconciler on that API."""
    kube = FakeKube()
    body = _model()
    return kube, body, body["metadata"]["name"], _reconciler(kube)


def _status_writes(kube: FakeKube) -> int:
    return len([w for w in kube.writes if w[0] == "status"])


def _foreign_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "team", "resourceVersion": "7"},
        "spec": {"ports": [{"port": 80}]},
    }


def test_only_an_owner_reference_with_the_same_uid_counts() -> None:
    ref = {"kind": "ModelDeployment", "name": "m", "uid": UID, "controller": True}
    assert owned_by({"metadata": {"ownerReferences": [ref]}}, UID)
    assert not owned_by({"metadata": {"ownerReferences": [{**ref, "uid": "older"}]}}, UID)
    assert not owned_by({"metadata": {}}, UID)
    manifest = {"kind": "Service", "metadata": {"name": "m", "namespace": "team"}}
    assert conflict_of(manifest, None, UID) is None
    c = conflict_of(manifest, {"metadata": {"ownerReferences": [{**ref, "uid": "older"}]}}, UID)
    assert c is not None and "Service team/m" in c.message() and "older" in c.holder


async def test_an_unlabelled_namesake_is_never_written_and_the_status_names_it() -> None:
    kube = FakeKube()
    body = _model()
    name = body["metadata"]["name"]
    kube.objects[("Service", "team", name)] = _foreign_service(name)
    outcome = await _reconciler(kube).reconcile("team", name, lambda: _snapshot(body))
    assert outcome is not None and outcome.result == Result.CONFLICT
    # Nothing is applied (not even the children whose places are free): pods must not run
    # beside a Service, ServiceAccount or RoleBinding that someone else controls.
    assert [w for w in kube.writes if w[0] != "status"] == []
    assert kube.objects[("Service", "team", name)] == _foreign_service(name)
    assert f"Service team/{name}" in outcome.message
    assert "ChildConflict" in kube.events


async def test_children_that_are_absent_or_owned_are_applied() -> None:
    kube = FakeKube()
    body = _model()
    name = body["metadata"]["name"]
    outcome = await _reconciler(kube).reconcile("team", name, lambda: _snapshot(body))
    assert outcome is not None and outcome.result == Result.APPLIED
    applied = [w[1] for w in kube.writes if w[0] == "apply"]
    assert "Service" in applied and "Deployment" in applied and "ServiceAccount" in applied


async def test_an_event_that_failed_to_post_is_sent_on_the_next_attempt() -> None:
    kube, body, name, rec = _setup()
    kube.fail_events = 1
    first = await rec.reconcile("team", name, lambda: _snapshot(body))
    assert first is not None and first.result == Result.WAITING  # retried by the work queue
    statuses = _status_writes(kube)
    assert statuses == 1 and kube.events == []
    second = await rec.reconcile("team", name, lambda: _snapshot(body))
    assert second is not None
    # The status did not change again, yet every Event owed for the first write went out.
    assert _status_writes(kube) == statuses
    assert kube.events and len(kube.events) == len(set(kube.events))


def _with_status(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {**body, "status": copy.deepcopy(status)}


async def test_events_of_a_status_write_whose_answer_was_lost_are_sent_once_it_shows() -> None:
    kube, body, name, rec = _setup()
    kube.fail_status = ["lost"]
    first = await rec.reconcile("team", name, lambda: _snapshot(body))
    assert first is not None and first.result == Result.WAITING
    assert kube.status and kube.events == []  # written, but the operator could not know
    # The watch now shows the status that landed: nothing changes, so no transition is seen,
    # yet the Events that write owed go out, once each.
    second = await rec.reconcile("team", name, lambda: _snapshot(_with_status(body, kube.status)))
    assert second is not None and second.result != Result.WAITING
    assert _status_writes(kube) == 1
    reasons = [c["reason"] for c in kube.status["conditions"]]
    assert kube.events and sorted(kube.events) == sorted(set(kube.events))
    assert set(kube.events) <= set(reasons) and "RuntimeFound" in kube.events


async def test_events_of_a_status_write_that_never_landed_are_not_sent_twice() -> None:
    kube, body, name, rec = _setup()
    kube.fail_status = ["refused"]
    first = await rec.reconcile("team", name, lambda: _snapshot(body))
    assert first is not None and first.result == Result.WAITING
    assert kube.status == {} and kube.events == []
    # The next attempt sees the old status, writes again and owes the transitions itself: the
    # failed write's Events are dropped, not sent beside them.
    second = await rec.reconcile("team", name, lambda: _snapshot(body))
    assert second is not None
    assert _status_writes(kube) == 1
    assert kube.events and len(kube.events) == len(set(kube.events))


async def test_the_reconciler_knows_its_own_writes_by_resource_version() -> None:
    kube, body, name, rec = _setup()
    await rec.reconcile("team", name, lambda: _snapshot(body))
    service = kube.objects[("Service", "team", name)]["metadata"]["resourceVersion"]
    status_version = str(kube.version)  # the status write came last
    assert rec.own_write("team", name, "Service", service)
    assert rec.own_write("team", name, "ModelDeployment", status_version)
    assert not rec.own_write("team", name, "Service", str(int(service) + 100))
    assert not rec.own_write("team", name, "ModelDeployment", "1")
    assert not rec.own_write("team", name, None, service)
    rec.forget("team", name)
    assert not rec.own_write("team", name, "Service", service)


class _TickingClock(datetime):
    """datetime whose now() moves on a second per call, so each attempt stamps its own
    transition times."""

    tick = datetime(2026, 1, 1, tzinfo=UTC)

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _TickingClock:
        cls.tick += timedelta(seconds=1)
        return cls.fromtimestamp(cls.tick.timestamp(), tz)


async def test_events_of_a_lost_write_survive_failed_attempts_that_read_a_stale_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(observe, "datetime", _TickingClock)
    kube, body, name, rec = _setup()
    # The write lands but its answer is lost as the API server dies; while it is away the
    # watches still show the old status and the next attempt's write is refused.
    kube.fail_status = ["lost", "refused"]
    await rec.reconcile("team", name, lambda: _snapshot(body))
    landed_status = copy.deepcopy(kube.status)
    await rec.reconcile("team", name, lambda: _snapshot(body))
    assert kube.events == [] and kube.status == landed_status
    # Back: the watches show what landed, whose transition times are the first attempt's.
    third = await rec.reconcile("team", name, lambda: _snapshot(_with_status(body, kube.status)))
    assert third is not None and third.result != Result.WAITING
    assert "RuntimeFound" in kube.events and len(kube.events) == len(set(kube.events))
    assert _status_writes(kube) == 1
