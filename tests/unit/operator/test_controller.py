"""What each watch event makes the operator do (airt_operator.controller), and the kopf glue
around it (airt_operator.handlers): the handlers translate kopf's arguments, the registration
follows the table of watches, and the World is built from the indices kopf hands over."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf
import pytest

from airt_operator import handlers as handlers_module
from airt_operator.controller import Controller
from airt_operator.handlers import Handlers, register
from airt_operator.health import Health
from airt_operator.reconciler import ReconcileOutcome, Result, Snapshot
from airt_operator.watches import WATCHES, Trigger
from airt_operator.world import (
    CLAIMS_INDEX,
    DEVICE_CLASSES_INDEX,
    MODELS_INDEX,
    NAMESPACED_RUNTIMES_INDEX,
    NAMESPACES_INDEX,
    NODES_INDEX,
    PODS_INDEX,
    RUNTIMES_INDEX,
    SLICES_INDEX,
    WATCHED_CHILD_KINDS,
    World,
    child_index,
)


class FakeReconciler:
    """Records reconciles and forgets; answers each reconcile with `result`."""

    resync_seconds = 300.0

    def __init__(self, result: Result | None = Result.UNCHANGED) -> None:
        self.result = result
        self.reconciled: list[tuple[str, str, Snapshot | None]] = []
        self.forgotten: list[tuple[str, str]] = []
        self.runtime_writes: list[tuple[str, dict[str, Any]]] = []
        # (namespace, owner, kind, resourceVersion) of the writes it made itself
        self.ours: set[tuple[str, str, str | None, str | None]] = set()

    async def reconcile(
        self, namespace: str, name: str, take: Callable[[], Snapshot | None]
    ) -> ReconcileOutcome | None:
        snap = take()
        self.reconciled.append((namespace, name, snap))
        if snap is None or self.result is None:
            return None
        return ReconcileOutcome(self.result, f"{self.result.value} for a test")

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append((namespace, name))

    def own_write(self, namespace: str, owner: str, kind: str | None, version: str | None) -> bool:
        return (namespace, owner, kind, version) in self.ours

    async def write_runtime_status(self, name: str, status: dict[str, Any]) -> None:
        self.runtime_writes.append((name, status))


def md(namespace: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "uid": "u"}, "spec": {}}


def world_with(*keys: tuple[str, str]) -> World:
    world = World.empty()
    world.models = {key: [md(*key)] for key in keys}
    return world


def controller(world: World, reconciler: FakeReconciler, **kwargs: Any) -> Controller:
    return Controller(world, reconciler, **kwargs)  # type: ignore[arg-type]


def queued(c: Controller) -> int:
    return len(c.queue)


def test_model_events_queue_the_model_and_deletion_forgets_it() -> None:
    reconciler = FakeReconciler()
    c = controller(world_with(("ns", "a")), reconciler)
    c.model_event("ns", "a", None)  # the initial listing changes nothing by itself
    assert queued(c) == 0 and c.runtime_status.dirty
    c.model_event("ns", "a", "MODIFIED")
    c.model_event("ns", "a", "MODIFIED")
    assert queued(c) == 1
    c.model_event("ns", "a", "DELETED")
    assert reconciler.forgotten == [("ns", "a")]


def test_a_runtime_event_queues_every_model() -> None:
    c = controller(world_with(("a", "x"), ("b", "y")), FakeReconciler())
    c.runtime_event(None)
    assert queued(c) == 0 and c.runtime_status.dirty
    c.runtime_event("MODIFIED")
    assert queued(c) == 2


def test_an_owned_object_queues_its_owner_only_when_labelled() -> None:
    c = controller(world_with(("ns", "a")), FakeReconciler())
    c.owned_event("ns", None, "MODIFIED")
    c.owned_event("ns", "a", None)
    assert queued(c) == 0
    c.owned_event("ns", "a", "MODIFIED")
    assert queued(c) == 1


async def test_an_echo_of_its_own_write_does_not_cut_a_models_backoff_short() -> None:
    reconciler = FakeReconciler()
    reconciler.ours = {("ns", "a", "ModelDeployment", "7"), ("ns", "a", "Service", "9")}
    c = controller(world_with(("ns", "a")), reconciler)
    c.queue.retry("ns", "a")  # a failed attempt: waiting out its backoff
    c.model_event("ns", "a", "MODIFIED", "7")  # the status it wrote
    c.owned_event("ns", "a", "MODIFIED", "Service", "9")  # the Service it applied
    assert queued(c) == 0 and c.queue.waiting_retries == 1
    c.owned_event("ns", "a", "DELETED", "Service", "9")  # gone: that is news
    assert queued(c) == 1 and c.queue.waiting_retries == 0
    c.queue.stop()


async def test_echoes_of_a_spec_change_reconcile_do_not_run_it_twice() -> None:
    reconciler = FakeReconciler(Result.WAITING)
    reconciler.ours = {("ns", "a", "Service", "9")}
    c = controller(world_with(("ns", "a")), reconciler)
    inner = reconciler.reconcile

    async def reconcile_applying_a_service(
        namespace: str, name: str, take: Callable[[], Snapshot | None]
    ) -> ReconcileOutcome | None:
        c.owned_event(namespace, name, "ADDED", "Service", "9")  # its own apply, seen
        return await inner(namespace, name, take)

    reconciler.reconcile = reconcile_applying_a_service  # type: ignore[method-assign]
    outcome = await c.spec_changed("ns", "a")
    assert outcome is not None and outcome.result == Result.WAITING
    assert queued(c) == 0 and c.queue.waiting_retries == 1  # only the backoff's retry
    c.queue.stop()


async def test_a_change_by_someone_else_runs_a_waiting_model_at_once() -> None:
    reconciler = FakeReconciler()
    reconciler.ours = {("ns", "a", "ModelDeployment", "7")}
    for event in (
        lambda c: c.model_event("ns", "a", "MODIFIED", "8"),  # a newer version: not ours
        lambda c: c.owned_event("ns", "a", "MODIFIED", "Deployment", "7"),  # another kind
        lambda c: c.owned_event("ns", "a", "MODIFIED", "Pod", None),
    ):
        c = controller(world_with(("ns", "a")), reconciler)
        c.queue.retry("ns", "a")
        event(c)
        assert queued(c) == 1 and c.queue.waiting_retries == 0
        c.queue.stop()


def test_the_echo_of_a_runtime_status_the_operator_wrote_queues_no_model() -> None:
    c = controller(world_with(("a", "x"), ("b", "y")), FakeReconciler())
    c.runtime_status.memory.remember("gpu", {"modelCount": 2}, "50")
    c.runtime_status.memory.remember("team/own", {"modelCount": 1}, "60")
    c.runtime_event("MODIFIED", "gpu", None, "50")  # the status the loop just wrote
    c.runtime_event("MODIFIED", "own", "team", "60")  # the same, namespaced
    assert queued(c) == 0 and c.runtime_status.dirty
    c.runtime_event("MODIFIED", "gpu", None, "51")  # a later change, by someone else
    assert queued(c) == 2


def test_a_runtime_deleted_queues_every_model_even_at_the_version_last_written() -> None:
    c = controller(world_with(("a", "x"), ("b", "y")), FakeReconciler())
    c.runtime_status.memory.remember("gpu", {"modelCount": 2}, "50")
    c.runtime_event("DELETED", "gpu", None, "50")
    assert queued(c) == 2


def test_a_namespace_event_queues_the_models_in_it() -> None:
    c = controller(world_with(("a", "x"), ("a", "y"), ("b", "z")), FakeReconciler())
    c.namespace_event("a", None)
    assert queued(c) == 0
    c.namespace_event("a", "MODIFIED")
    assert queued(c) == 2


def test_crd_events_mark_the_watches_synced_and_follow_the_service_monitor_crd() -> None:
    health = Health()
    world = world_with(("ns", "a"))
    c = controller(world, FakeReconciler(), health=health)
    c.crd_event("modeldeployments.airt.dev", None)
    assert health.synced and queued(c) == 0
    c.crd_event("servicemonitors.monitoring.coreos.com", None)
    assert world.service_monitor_crd and queued(c) == 1
    c.crd_event("servicemonitors.monitoring.coreos.com", "MODIFIED")  # still there: no resync
    assert world.service_monitor_crd
    c.crd_event("servicemonitors.monitoring.coreos.com", "DELETED")
    assert not world.service_monitor_crd


async def test_a_spec_change_reconciles_at_once_from_the_world() -> None:
    reconciler = FakeReconciler(Result.APPLIED)
    c = controller(world_with(("ns", "a")), reconciler)
    outcome = await c.spec_changed("ns", "a")
    assert outcome is not None and outcome.result == Result.APPLIED
    ((ns, name, snap),) = reconciler.reconciled
    assert (ns, name) == ("ns", "a") and snap is not None and snap.body == md("ns", "a")
    assert c.queue.failures("ns", "a") == 0


@pytest.mark.parametrize("result", [Result.WAITING, Result.FAILED, Result.CONFLICT, None])
async def test_a_spec_change_that_waiting_may_fix_is_retried_with_backoff(
    result: Result | None,
) -> None:
    c = controller(world_with(("ns", "a")), FakeReconciler(result))
    await c.spec_changed("ns", "a")
    assert c.queue.failures("ns", "a") == 1 and c.queue.waiting_retries == 1
    c.stop()


async def test_an_invalid_spec_is_not_retried() -> None:
    c = controller(world_with(("ns", "a")), FakeReconciler(Result.INVALID))
    outcome = await c.spec_changed("ns", "a")
    assert outcome is not None and outcome.result == Result.INVALID
    assert c.queue.waiting_retries == 0


async def test_the_queue_retries_what_waiting_may_fix_and_drops_what_is_gone() -> None:
    c = controller(world_with(("ns", "a")), FakeReconciler(Result.WAITING))
    assert await c.reconcile_queued("ns", "a") is False
    assert await c.reconcile_queued("ns", "gone") is True  # not indexed: nothing to do
    c.reconciler.result = Result.INVALID  # type: ignore[attr-defined]
    assert await c.reconcile_queued("ns", "a") is True


def indices() -> dict[str, Any]:
    out: dict[str, Any] = {
        MODELS_INDEX: {("ns", "a"): [md("ns", "a")]},
        RUNTIMES_INDEX: {},
        NAMESPACED_RUNTIMES_INDEX: {},
        PODS_INDEX: {},
        NODES_INDEX: {},
        NAMESPACES_INDEX: {"ns": [{"labels": {"team": "x"}}]},
        CLAIMS_INDEX: {},
        SLICES_INDEX: {},
        DEVICE_CLASSES_INDEX: {},
    }
    out.update({child_index(kind): {} for kind in WATCHED_CHILD_KINDS})
    return out


async def test_the_handlers_build_the_world_at_start_up_and_translate_kopfs_arguments() -> None:
    reconciler = FakeReconciler(Result.INVALID)
    handlers = Handlers(reconciler, workers=1)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await handlers.model_event(namespace="ns", name="a", type="MODIFIED")
    await handlers.startup(**indices(), logger=None, memo={})
    try:
        snap = handlers.controller.world.snapshot("ns", "a")
        assert snap is not None and snap.namespace_labels == {"team": "x"}
        with pytest.raises(kopf.PermanentError):
            await handlers.spec_changed(namespace="ns", name="a", body={}, diff=())
        await handlers.owned_event(
            namespace="ns", labels={"airt.dev/modeldeployment": "a"}, type="ADDED"
        )
        assert handlers.controller.queue.failures("ns", "a") == 0
        # The kind and resourceVersion of the object reach the controller, which asks the
        # reconciler whether the change was its own.
        reconciler.ours = {("ns", "a", "Service", "41"), ("ns", "a", "ModelDeployment", "42")}
        handlers.controller.queue.retry("ns", "a")
        await handlers.owned_event(
            namespace="ns",
            labels={"airt.dev/modeldeployment": "a"},
            type="MODIFIED",
            body={"kind": "Service", "metadata": {"resourceVersion": "41"}},
        )
        await handlers.model_event(
            namespace="ns",
            name="a",
            type="MODIFIED",
            body={"kind": "ModelDeployment", "metadata": {"resourceVersion": "42"}},
        )
        assert handlers.controller.queue.waiting_retries == 1
    finally:
        await handlers.cleanup()


def test_registration_follows_the_table_of_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every index and event handler registered comes from WATCHES, and nothing else is."""
    indexed: list[tuple[tuple[str, ...], str]] = []
    evented: list[tuple[str, ...]] = []
    changed: list[tuple[str, ...]] = []

    def recorder(into: list[Any], with_id: bool = False) -> Callable[..., Any]:
        def decorator_factory(*selector: str, **kwargs: Any) -> Callable[[Any], Any]:
            into.append((selector, kwargs["id"]) if with_id else selector)
            return lambda fn: fn

        return decorator_factory

    monkeypatch.setattr(kopf, "index", recorder(indexed, with_id=True))
    monkeypatch.setattr(kopf.on, "event", recorder(evented))
    for cause in ("create", "update", "resume"):
        monkeypatch.setattr(kopf.on, cause, recorder(changed))
    register(kopf.OperatorRegistry(), FakeReconciler())  # type: ignore[arg-type]
    assert handlers_module.WATCHES is WATCHES
    assert indexed == [(w.selector, w.index) for w in WATCHES if w.index is not None]
    assert evented == [w.selector for w in WATCHES if w.trigger is not None]
    assert changed == [w.selector for w in WATCHES if w.spec_changes for _ in range(3)]
    assert {w.trigger for w in WATCHES} - {None} == {
        Trigger.MODEL,
        Trigger.RUNTIME,
        Trigger.OWNED,
        Trigger.NAMESPACE,
        Trigger.CRD,
        Trigger.DEVICES,
    }
