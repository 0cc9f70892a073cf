"""The `airt` command line: one entry point for every process airt runs.

Called by the console script `airt` (pyproject) and by the runtime images' entry points. Each
command imports its component lazily, so the worker image (no kopf) and the operator image (no
torch) can both carry this module.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    name="airt",
    help="airt: run AI inference runtimes on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
)
dev_app = typer.Typer(
    help="A local control plane with fake GPU nodes (kwok).", no_args_is_help=True
)
operator_app = typer.Typer(help="The airt operator.", no_args_is_help=True)
app.add_typer(dev_app, name="dev")
app.add_typer(operator_app, name="operator")

_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=_PASSTHROUGH)
def serve(ctx: typer.Context) -> None:
    """Run the inference worker (options: `airt serve --help`)."""
    from airt_worker.main import main

    raise typer.Exit(main(list(ctx.args)))


@app.command(context_settings=_PASSTHROUGH)
def fetch(ctx: typer.Context) -> None:
    """Download and verify a model (the model-fetch init container; `airt fetch --help`)."""
    from airt_worker.fetch import main

    raise typer.Exit(main(list(ctx.args)))


@app.command(context_settings=_PASSTHROUGH)
def metrics(ctx: typer.Context) -> None:
    """Run the metrics sidecar (options: `airt metrics --help`)."""
    from airt_metrics.main import main

    raise typer.Exit(main(list(ctx.args)))


@app.command()
def crds(
    out: Path = typer.Option(Path("crds"), help="Directory for the generated CRD YAML."),
    api_doc: Path = typer.Option(Path("docs/api.md"), help="Where the API reference goes."),
) -> None:
    """Generate the CRDs and the API reference from the pydantic models."""
    from airt_operator.crdgen import write_all

    for path in write_all(out, api_doc):
        typer.echo(f"wrote {path}")


@operator_app.command("run")
def operator_run(
    standalone: bool = typer.Option(None, help="Run without kopf peering (one replica)."),
    namespace: list[str] = typer.Option([], help="Watch only these namespaces (repeatable)."),
    health_port: int = typer.Option(None, help="Port of /metrics and /healthz (default 8080)."),
) -> None:
    """Run the operator against the current kubeconfig (or in-cluster config)."""
    from airt_operator.main import main
    from airt_operator.settings import OperatorSettings

    overrides: dict[str, object] = {}
    if standalone is not None:
        overrides["standalone"] = standalone
    if namespace:
        overrides["namespaces"] = namespace
    if health_port is not None:
        overrides["health_port"] = health_port
    raise typer.Exit(main(OperatorSettings(**overrides)))  # type: ignore[arg-type]


@dev_app.command("up")
def dev_up(
    nodepool: Path = typer.Option(
        None, help="Node pool YAML (default: tools/cluster/nodepool.yaml)."
    ),
    real_node: bool = typer.Option(
        True,
        "--real-node/--no-real-node",
        help="Also join a real node (containerd + kubelet) when this machine can host one.",
    ),
) -> None:
    """Start (or reuse) the local cluster; the last line printed is KUBECONFIG=<path>.

    The kwok fleet always comes up. The real node joins when the machine has what it needs;
    otherwise what is missing and how to get it is printed, and the fake-node cluster stays.
    """
    from airt_operator.dev import realnode_preflight as preflight
    from airt_operator.dev.cluster import ClusterError, ClusterManager
    from airt_operator.dev.realnode import IMAGES_JSON, RealNode, default_layout, set_real_node_only

    manager = ClusterManager.from_env()
    if nodepool is not None:
        manager.nodepool = nodepool
    try:
        started = manager.up()
    except ClusterError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    c = manager.cluster()
    state = "started" if started else "already up"
    typer.echo(f"cluster {c.name!r} {state}; kubectl: {c.bin_dir / 'kubectl'}")
    if real_node:
        missing = preflight.check()
        if missing:
            typer.echo(f"warning: no real node: {preflight.report(missing)}", err=True)
            typer.echo("the fake (kwok) nodes are up; the real-node e2e tests will be skipped")
        else:
            node = RealNode(c, default_layout(c.name))
            try:
                node.up()
                set_real_node_only(c, False)
            except ClusterError as exc:
                typer.echo(f"error: the real node did not come up: {exc}", err=True)
                raise typer.Exit(1) from exc
            typer.echo(
                f"real node {node.layout.name} Ready (cordoned until a test or `make dev` uses "
                f"it; logs in {node.layout.logs})"
            )
            if not IMAGES_JSON.exists():
                typer.echo(
                    "the airt images are not built yet: `make images`, then `make cluster-up`"
                )
    typer.echo(f"KUBECONFIG={c.kubeconfig}")


@dev_app.command("run")
def dev_run() -> None:
    """Cluster, CRDs, runtimes, operator, examples Ready, and a model served and answered."""
    from airt_operator.dev import devjob
    from airt_operator.dev.cluster import ClusterError
    from airt_operator.dev.wait import WaitTimeoutError

    try:
        c = devjob.run(lambda line: typer.echo(f"[dev] {line}"))
    except (ClusterError, WaitTimeoutError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"KUBECONFIG={c.kubeconfig}")


@dev_app.command("down")
def dev_down() -> None:
    """Stop the dev operator, the real node and the port-forward, and delete the local cluster."""
    from airt_operator.dev import devjob
    from airt_operator.dev.cluster import ClusterManager

    devjob.stop()
    ClusterManager.from_env().down()
    typer.echo("cluster deleted")


@dev_app.command("dry-run")
def dev_dry_run() -> None:
    """Print the commands kwokctl would run (shows that every binary is a local path)."""
    from airt_operator.dev.cluster import ClusterManager

    typer.echo(ClusterManager.from_env().dry_run())


@dev_app.command("bin-dir")
def dev_bin_dir() -> None:
    """Print the directory of the pinned binaries (kubectl, helm, ...), building them if needed."""
    from airt_operator.dev.cluster import tool_bin_dir

    typer.echo(str(tool_bin_dir()))


if __name__ == "__main__":  # pragma: no cover
    app()
