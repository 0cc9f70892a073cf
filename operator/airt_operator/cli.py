"""The `airt-operator` command: the operator image's entry point.

`airt-operator run` runs the operator (the chart renders it as the Deployment's args) and
`airt-operator crds` writes the CRDs and the API reference from the pydantic models (`make
generate`). Each command imports what it needs lazily, so `--help` stays fast.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import typer

app = typer.Typer(
    name="airt-operator",
    help="The airt operator: ModelDeployments and InferenceRuntimes reconciled by kopf.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"airt-operator {version('airt-operator')}")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """The airt operator: ModelDeployments and InferenceRuntimes reconciled by kopf."""


@app.command()
def crds(
    out: Path = typer.Option(Path("crds"), help="Directory for the generated CRD YAML."),
    api_doc: Path = typer.Option(Path("docs/api.md"), help="Where the API reference goes."),
) -> None:
    """Generate the CRDs and the API reference from the pydantic models."""
    from airt_operator.crdgen import write_all

    for path in write_all(out, api_doc):
        typer.echo(f"wrote {path}")


@app.command("run")
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


if __name__ == "__main__":  # pragma: no cover
    app()
