"""The GPU check's one entry point: install the offline kit, then run bench/gpu/check.py.

Run from the repository root on the GPU machine (no network; its own python3 holds torch), or
anywhere with `--device cpu`:

    python3 bench/gpu/run.py [--device cuda|cpu] [--budget-s 400] [--out DIR]

Step 1 installs bench/gpu/kit (built here by `make gpu-kit`, see bench/gpu/kit.py) into a
target folder with `pip install --no-index --no-deps --target`, after checking each wheel's
sha256 against the kit's manifest; the fallback wheels (grpcio, protobuf) go in only when the
machine's own version is outside the range the worker declares. Step 2 runs the checks in a child
process with that folder first on PYTHONPATH, killed if it outlives the budget. Whatever happens,
DIR (default $OUT, else bench/gpu/out) ends up with gpu-check.json and gpu-check.txt. This file
imports nothing outside the standard library, so it runs before anything is installed.
Exit status: 0 when every step ran and every conformance check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULT = "gpu-check.json"
SUMMARY = "gpu-check.txt"
#: Seconds the checks may run past the budget before they are killed; the default budget plus
#: this stays inside the 8 minutes a run on the GPU machine may take.
GRACE_S = 60


def _version_ok(name: str, spec: str) -> tuple[bool, str | None]:
    """Whether this interpreter's own `name` satisfies `spec`; (ok, the version found)."""
    try:
        found = metadata.version(name)
    except metadata.PackageNotFoundError:
        return False, None
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # cannot tell: the kit's copy is the safe choice
        return False, found
    return SpecifierSet(spec).contains(found, prereleases=True), found


def install(kit: Path, site: Path) -> dict[str, Any]:
    """Verify the kit against its manifest and install it into `site`; return the step record."""
    t0 = time.monotonic()
    manifest = json.loads((kit / "manifest.json").read_text())
    wheels: list[Path] = []
    fallbacks: dict[str, dict[str, Any]] = {}
    for entry in manifest["files"]:
        path = kit / entry["file"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise RuntimeError(f"{path}: sha256 {digest} differs from the manifest's")
        if entry["group"] == "fallback":
            ok, found = _version_ok(entry["name"], entry["requires"])
            fallbacks[entry["name"]] = {
                "machine_version": found,
                "requires": entry["requires"],
                "installed_from_kit": not ok,
            }
            if ok:
                continue
        wheels.append(path)
    site.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        str(site),
        *map(str, wheels),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip install failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {
        "status": "PASS",
        "seconds": round(time.monotonic() - t0, 2),
        "site": str(site),
        "command": " ".join(cmd[:14]) + f" <{len(wheels)} wheels>",
        "wheels": sorted(w.name for w in wheels),
        "kit_bytes": manifest["bytes"],
        "fallback": fallbacks,
    }


def main(argv: list[str] | None = None) -> int:
    default_out = os.environ.get("OUT") or str(HERE / "out")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument(
        "--budget-s", type=float, default=400.0, help="wall time for everything (default 400)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(default_out), help=f"default {default_out}"
    )
    parser.add_argument("--kit", type=Path, default=HERE / "kit")
    parser.add_argument("--site", type=Path, default=Path("/tmp/airt-gpu-kit-site"))
    parser.add_argument(
        "--models-cache",
        type=Path,
        default=None,
        help="reuse example models built earlier with the same builder and torch (tests)",
    )
    parser.add_argument(
        "--grace-s",
        type=float,
        default=GRACE_S,
        help=f"seconds past the budget before the checks are killed (default {GRACE_S})",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep models and worker logs")
    args = parser.parse_args(argv)
    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / RESULT
    record_path.unlink(missing_ok=True)
    try:
        installed = install(args.kit, args.site)
    except Exception as e:
        installed = {"status": "FAIL", "error": f"{type(e).__name__}: {e}"}
    print(f"[gpu-check] install: {installed['status']}", file=sys.stderr, flush=True)

    error = None
    if installed["status"] == "PASS":
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(args.site), str(ROOT / "bench"), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        env["PYTHONUNBUFFERED"] = "1"
        (args.out / "install.json").write_text(json.dumps(installed))
        remaining = args.budget_s - (time.monotonic() - start)
        cmd = [
            sys.executable,
            str(HERE / "check.py"),
            "--device",
            args.device,
            "--budget-s",
            f"{remaining:.1f}",
            "--out",
            str(args.out),
            "--install-record",
            str(args.out / "install.json"),
            "--grace-s",
            str(args.grace_s),
        ]
        if args.models_cache is not None:
            cmd += ["--models-cache", str(args.models_cache)]
        if args.keep_work:
            cmd.append("--keep-work")
        # Its own process group, so that a kill takes the workers it started along with it.
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
        try:
            # Grace beyond the budget for a slow start-up and the write-up; then it is killed.
            code = proc.wait(timeout=max(remaining, 1) + args.grace_s)
            if code not in (0, 1):
                error = f"check.py exited with {code}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            limit = f"{args.budget_s:g} s + {args.grace_s:g} s"
            error = f"check.py outlived the budget ({limit}) and was killed"
        (args.out / "install.json").unlink(missing_ok=True)

    if not record_path.exists():  # the checks never wrote their result: say what is known
        doc = {
            "kind": "airt-gpu-check",
            "device": args.device,
            "budget_s": args.budget_s,
            "elapsed_s": round(time.monotonic() - start, 1),
            "steps": {"install": installed},
            "error": error or "check.py wrote no result",
            "ok": False,
        }
        record_path.write_text(json.dumps(doc, indent=1) + "\n")
        (args.out / SUMMARY).write_text(f"airt GPU check: FAILED before any check ran\n{doc}\n")
    doc = json.loads(record_path.read_text())
    if error:
        doc.setdefault("errors", []).append(error)
        doc["ok"] = False
        record_path.write_text(json.dumps(doc, indent=1) + "\n")
    summary = args.out / SUMMARY
    if summary.exists():
        print(summary.read_text(), end="")
    return 0 if doc.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
