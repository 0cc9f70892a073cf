"""The plugin's only edge to the cluster: `kubectl` run as a subprocess with the user's
kubeconfig (and context), and the HTTP of one inference.

Called by the CLI. Going through kubectl rather than a client library keeps every way a user
authenticates (exec plugins, OIDC, proxies) working unchanged, and keeps the plugin small. The
binary is `$KUBECTL`, else `kubectl` on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from airt_kubectl.objects import Obj

TIMEOUT = 60.0
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


class KubeError(Exception):
    """kubectl failed or the cluster refused; the message is kubectl's own last line(s)."""

    def __init__(self, message: str) -> None:
        # kubectl starts its messages with "error: "; the CLI adds its own.
        super().__init__(message.removeprefix("error: ").removeprefix("Error: "))


@dataclass(frozen=True)
class Kubectl:
    """`kubectl` with the global flags the user gave `kubectl airt`."""

    context: str | None = None
    kubeconfig: str | None = None
    binary: str = field(default_factory=lambda: os.environ.get("KUBECTL", "kubectl"))

    def _argv(self, args: Sequence[str]) -> list[str]:
        exe = shutil.which(self.binary) or self.binary
        argv = [exe]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.context:
            argv += ["--context", self.context]
        return [*argv, *args]

    def run(self, *args: str, stdin: str | None = None, timeout: float = TIMEOUT) -> str:
        try:
            proc = subprocess.run(
                self._argv(args),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise KubeError(
                f"{self.binary} not found: install kubectl, or set KUBECTL to its path"
            ) from None
        except subprocess.TimeoutExpired:
            raise KubeError(f"kubectl {' '.join(args)} took longer than {timeout:g}s") from None
        if proc.returncode != 0:
            raise KubeError(proc.stderr.strip() or f"kubectl {' '.join(args)} failed")
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def items(self, *args: str) -> list[Obj]:
        return list(self.json("get", *args).get("items") or [])

    def get(self, *args: str) -> Obj | None:
        """One object, or None when it does not exist."""
        try:
            obj: Obj = self.json("get", *args)
        except KubeError as exc:
            if "NotFound" in str(exc) or "not found" in str(exc):
                return None
            raise
        return obj

    def try_items(self, *args: str) -> list[Obj] | None:
        """The list, or None when the user may not read it (nodes, other namespaces' pods)."""
        try:
            return self.items(*args)
        except KubeError as exc:
            if "forbidden" in str(exc).lower():
                return None
            raise

    def current_namespace(self) -> str:
        out = self.run("config", "view", "--minify", "-o", "jsonpath={..namespace}").strip()
        return out or "default"

    def events_about(self, namespace: str, names: Sequence[str]) -> list[Obj]:
        """The namespace's Events whose object is one of `names` (the model and its pods)."""
        wanted = set(names)
        return [
            e
            for e in self.items("events", "-n", namespace)
            if (e.get("involvedObject") or {}).get("name") in wanted
        ]

    @contextmanager
    def port_forward(self, namespace: str, target: str, port: int) -> Iterator[int]:
        """`kubectl port-forward` to `target` (e.g. service/NAME) on a free local port; yields
        the local port while the forward runs."""
        proc = subprocess.Popen(
            self._argv(["port-forward", "-n", namespace, target, f":{port}"]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()  # the first line names the port, or it exited
            match = _FORWARDING.search(line)
            if not match:
                proc.wait(timeout=TIMEOUT)
                raise KubeError(proc.stderr.read().strip() or f"port-forward to {target} failed")
            yield int(match.group(1))
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def http_json(url: str, body: Any | None = None, timeout: float = TIMEOUT) -> Any:
    """GET (no body) or POST JSON; the decoded answer. A v2 error answer becomes KubeError with
    the server's own `error` text."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode() or "null")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        with suppress(ValueError, AttributeError):  # a v2 error body: {"error": "..."}
            text = str(json.loads(text).get("error", text))
        raise KubeError(f"{url}: HTTP {exc.code}: {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise KubeError(f"{url}: {getattr(exc, 'reason', exc)}") from None
