"""The `kubectl-airt` command (`kubectl airt ...` once on PATH): status, why, plan, logs, infer.

Thin: each command gathers objects through kube.Kubectl, hands them to a pure module (objects,
diagnose, fit, v2) and prints what tables.py makes of them. Errors from the cluster print one
line and exit 2; `why` exits 1 when the model needs fixing, so scripts can act on it.
"""

from __future__ import annotations

from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import typer
import yaml

from airt_kubectl import diagnose, fit, tables, v2
from airt_kubectl.kube import Kubectl, KubeError, http_json
from airt_kubectl.objects import Obj, name_of, pods_of, selector_of, summarize

MD = "modeldeployments.airt.dev"
IRT = "inferenceruntimes.airt.dev"
MANAGED = "app.kubernetes.io/managed-by=airt-operator"
CONTAINERS = ("worker", "model-fetch", "metrics")
EXIT_UNHEALTHY, EXIT_ERROR = 1, 2

app = typer.Typer(
    name="kubectl-airt",
    help="airt ModelDeployments from the user's side: status, why, plan, logs, infer.",
    no_args_is_help=True,
    add_completion=False,
)


class _State:
    kube = Kubectl()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kubectl-airt {dist_version('airt-kubectl')}")
        raise typer.Exit()


@app.callback()
def main(
    context: str = typer.Option(None, "--context", help="The kubeconfig context to use."),
    kubeconfig: str = typer.Option(None, "--kubeconfig", help="Path to the kubeconfig file."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """airt ModelDeployments from the user's side (kubectl's credentials, any machine)."""
    _State.kube = Kubectl(context=context, kubeconfig=kubeconfig)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def _ns(namespace: str | None) -> str:
    return namespace or _State.kube.current_namespace()


NAMESPACE = typer.Option(None, "--namespace", "-n", help="Namespace (default: the context's).")


@app.command()
def status(
    namespace: str = NAMESPACE,
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="Every namespace."),
) -> None:
    """Models with Ready, Available and Degraded (reasons where wrong), replicas and placement."""
    kube = _State.kube
    try:
        where = ["-A"] if all_namespaces else ["-n", _ns(namespace)]
        mds = kube.items(MD, *where)
        pods = kube.try_items("pods", *where, "-l", MANAGED) or []
    except KubeError as exc:
        raise _fail(str(exc)) from None
    if not mds:
        scope = "any namespace" if all_namespaces else f"namespace {where[1]}"
        typer.echo(f"No ModelDeployments found in {scope}.")
        return
    key = lambda md: (md["metadata"].get("namespace", ""), name_of(md))  # noqa: E731
    rows = [summarize(md, _same_ns(md, pods)) for md in sorted(mds, key=key)]
    typer.echo(tables.status_table(rows, all_namespaces))


def _same_ns(md: Obj, pods: list[Obj]) -> list[Obj]:
    ns = md["metadata"].get("namespace")
    return [p for p in pods if p["metadata"].get("namespace") == ns]


def gather(kube: Kubectl, namespace: str, name: str) -> diagnose.Bundle:
    """Everything `why` reads about one model (what the user may not read is left out)."""
    md = kube.get(MD, name, "-n", namespace)
    if md is None:
        return diagnose.Bundle(namespace, name, None)
    runtime_name = (md.get("status") or {}).get("runtimeName") or (
        (md.get("spec") or {}).get("runtime") or {}
    ).get("name")
    runtime = None
    if runtime_name:
        try:
            runtime = kube.get(IRT, str(runtime_name))
        except KubeError:
            runtime = None  # forbidden to read runtimes: the conditions still say enough
    pods = kube.try_items("pods", "-n", namespace, "-l", selector_of(md)) or []
    sets = kube.try_items("replicasets", "-n", namespace, "-l", selector_of(md)) or []
    names = [name, *(name_of(o) for o in [*sets, *pods])]
    events = kube.events_about(namespace, names)
    return diagnose.Bundle(namespace, name, md, runtime, pods_of(md, pods) or pods, events)


@app.command()
def why(
    name: str = typer.Argument(..., help="The ModelDeployment."),
    namespace: str = NAMESPACE,
    brief: bool = typer.Option(False, "--brief", help="Only the line that says what to fix."),
) -> None:
    """Read the model's conditions, Events, pods and scheduler messages; say the one thing to fix.

    Exits 1 when something needs fixing, 0 when the model is Ready."""
    try:
        bundle = gather(_State.kube, _ns(namespace), name)
    except KubeError as exc:
        raise _fail(str(exc)) from None
    result = diagnose.diagnose(bundle)
    typer.echo(tables.diagnosis_text(result, verbose=not brief))
    if not result.healthy:
        raise typer.Exit(EXIT_UNHEALTHY)


@app.command()
def plan(
    file: Path = typer.Option(..., "--filename", "-f", help="A ModelDeployment YAML file."),
    namespace: str = NAMESPACE,
) -> None:
    """Where a ModelDeployment would land and why not, without creating anything.

    The API server checks the file in a dry run (schema and CEL rules), then each node is held
    against the runtime's policy, the GPU placement, taints and allocatable."""
    kube = _State.kube
    try:
        docs = [d for d in yaml.safe_load_all(file.read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(f"{file}: {exc}") from None
    mds = [d for d in docs if d.get("kind") == "ModelDeployment"]
    if not mds:
        raise _fail(f"{file}: no ModelDeployment in it")
    worst = 0
    for md in mds:
        ns = namespace or (md.get("metadata") or {}).get("namespace") or _ns(None)
        typer.echo(f"ModelDeployment {ns}/{name_of(md)}")
        try:
            kube.run(
                "apply", "--server-side", "--dry-run=server", "--field-manager=kubectl-airt-plan",
                "-n", ns, "-f", "-", "-o", "name", stdin=yaml.safe_dump(md),
            )  # fmt: skip
        except KubeError as exc:
            typer.echo(f"the API server would refuse it: {exc}")
            worst = EXIT_UNHEALTHY
            continue
        typer.echo("the API server accepts it (dry run)")
        try:
            runtimes = kube.try_items(IRT) or []
            nodes = kube.try_items("nodes")
            pods = kube.try_items("pods", "-A", "--field-selector=status.phase!=Succeeded")
        except KubeError as exc:
            raise _fail(str(exc)) from None
        if nodes is None:
            typer.echo("cannot read nodes (forbidden): no node-fit summary")
            continue
        result = fit.plan(md, runtimes, nodes, pods)
        typer.echo(tables.plan_text(result))
        if not result.fitting:
            worst = EXIT_UNHEALTHY
    raise typer.Exit(worst)


@app.command()
def logs(
    name: str = typer.Argument(..., help="The ModelDeployment."),
    namespace: str = NAMESPACE,
    container: str = typer.Option(
        "worker", "--container", "-c", help="worker, model-fetch or metrics."
    ),
    tail: int = typer.Option(200, help="Lines per pod (-1: all)."),
    previous: bool = typer.Option(False, "--previous", "-p", help="The previous run's log."),
) -> None:
    """The log of one container of every pod of the model."""
    if container not in CONTAINERS:
        raise _fail(f"--container must be one of {', '.join(CONTAINERS)}, not {container}")
    kube = _State.kube
    ns = _ns(namespace)
    try:
        md = kube.get(MD, name, "-n", ns)
        if md is None:
            raise _fail(f"no ModelDeployment {name} in namespace {ns}")
        pods = pods_of(md, kube.items("pods", "-n", ns, "-l", selector_of(md)))
    except KubeError as exc:
        raise _fail(str(exc)) from None
    if not pods:
        raise _fail(f"ModelDeployment {name} has no pods (kubectl airt why {name})")
    failed = 0
    for pod in pods:
        args = ["logs", "-n", ns, name_of(pod), "-c", container, f"--tail={tail}"]
        typer.echo(f"==> pod/{name_of(pod)} container {container} <==")
        try:
            typer.echo(kube.run(*args, *(["--previous"] if previous else [])).rstrip("\n"))
        except KubeError as exc:
            failed += 1
            typer.echo(f"(no log: {exc})", err=True)
    if failed == len(pods):
        raise typer.Exit(EXIT_ERROR)


@app.command()
def infer(
    name: str = typer.Argument(..., help="The ModelDeployment."),
    inputs: list[str] = typer.Option(
        ..., "--input", "-i", help="name=json-array, or name:DATATYPE=json-array (repeatable)."
    ),
    namespace: str = NAMESPACE,
    url: str = typer.Option(
        None, help="Call this base URL (http://host:8000) instead of port-forwarding."
    ),
    timeout: float = typer.Option(60.0, help="Seconds for each HTTP call."),
) -> None:
    """Send one v2 inference to the model through a port-forward to its Service; print outputs."""
    try:
        tensors = [v2.parse_input(i) for i in inputs]
    except v2.InputError as exc:
        raise _fail(str(exc)) from None
    kube = _State.kube
    try:
        if url:
            typer.echo(_infer(url.rstrip("/"), name, tensors, timeout))
            return
        ns = _ns(namespace)
        md = kube.get(MD, name, "-n", ns)
        if md is None:
            raise _fail(f"no ModelDeployment {name} in namespace {ns}")
        served = str(((md.get("spec") or {}).get("model") or {}).get("name") or name)
        with kube.port_forward(ns, f"service/{name}", 8000) as port:
            typer.echo(_infer(f"http://127.0.0.1:{port}", served, tensors, timeout))
    except (KubeError, v2.InputError) as exc:
        raise _fail(str(exc)) from None


def _infer(base: str, model: str, tensors: list[v2.Tensor], timeout: float) -> str:
    metadata: Any = http_json(f"{base}/v2/models/{model}", timeout=timeout)
    body = v2.request_body(tensors, metadata if isinstance(metadata, dict) else None)
    answer = http_json(f"{base}/v2/models/{model}/infer", body, timeout=timeout)
    return v2.outputs_text(answer if isinstance(answer, dict) else {})


if __name__ == "__main__":  # pragma: no cover
    app()
