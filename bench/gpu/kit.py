"""Build the offline kit for the GPU check: the wheels the worker needs beyond the GPU machine's
own Python packages, plus the worker and the contract it reads as wheels.

Run here, where PyPI is reachable, by `make gpu-kit` (and by tests/worker/test_gpu_kit.py):

    python bench/gpu/kit.py [--out bench/gpu/kit]        # prints the kit folder and its size

The GPU machine reaches no network, so bench/gpu/run.py installs exactly these files there with
`pip install --no-index --no-deps --target`. Versions are those of uv.lock (what the test suite
runs), downloaded for CPython 3.12 on manylinux x86-64, the machine's interpreter. Two groups:

- `wheels/`: packages the machine does not have at all (its list is in
  /work/.library/device/KINDS.md; pydantic, uvicorn, httptools, orjson and tritonclient among
  them), always installed;
- `fallback/`: packages the machine has in a version that is not recorded (grpcio, protobuf,
  typing-extensions); the worker's gRPC stubs refuse older runtimes and pydantic needs a recent
  typing-extensions, so run.py installs these only when the machine's own version is outside
  the range needed.

A wheel already in the folder is not downloaded again; the project's wheels are rebuilt every time
(it is the code under test). `manifest.json` lists every file with its sha256 and group.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "gpu" / "kit"

#: Absent from the GPU machine, needed by `python -m airt_worker` or by the check's clients.
MISSING = (
    # settings
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "annotated-types",
    "typing-inspection",
    "python-dotenv",
    # the HTTP transport
    "uvicorn",
    "httptools",
    "orjson",
    # the gRPC stubs the worker serves, and the v2 clients the check drives it with
    "tritonclient",
    "python-rapidjson",
    "geventhttpclient",
    "gevent",
    "greenlet",
    "zope-event",
    "zope-interface",
    "brotli",
)
#: Present there, version unknown: name -> the range the worker (pyproject.toml) or the kit's
#: pydantic needs.
FALLBACK = {"grpcio": ">=1.81.1", "protobuf": ">=6.33.5,<7", "typing-extensions": ">=4.16.0"}

PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
#: The kit travels with the working tree to the GPU machine, whose limit is 64 MiB in all.
MAX_BYTES = 64 * 1024 * 1024


def locked_versions(lock: Path = ROOT / "uv.lock") -> dict[str, str]:
    """Package name -> version in uv.lock (the highest, where markers split a package)."""
    doc = tomllib.loads(lock.read_text())
    versions: dict[str, str] = {}
    for pkg in doc["package"]:
        name, version = pkg["name"], pkg["version"]
        old = versions.get(name)
        if old is None or _key(version) > _key(old):
            versions[name] = version
    return versions


def _key(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for p in version.split("."):
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def pip_command() -> list[str]:
    """A pip that can download: this interpreter's, else uv's (`uvx pip`)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    uvx = shutil.which("uvx")
    if uvx:
        return [uvx, "--from", "pip", "pip"]
    raise RuntimeError("no pip: install pip for this interpreter, or uv (uvx)")


def download(pip: list[str], pins: list[str], dest: Path) -> None:
    """Download `pins` (NAME==VERSION) as cp312 manylinux wheels into `dest`, skipping present."""
    dest.mkdir(parents=True, exist_ok=True)
    todo = [p for p in pins if not _present(dest, p)]
    if not todo:
        return
    cmd = [
        *pip,
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        *[a for p in PLATFORMS for a in ("--platform", p)],
        "-d",
        str(dest),
        *todo,
    ]
    subprocess.run(cmd, check=True)


def _present(dest: Path, pin: str) -> bool:
    return any(_is(w, pin) for w in dest.glob("*.whl"))


def _is(wheel: Path, pin: str) -> bool:
    """Whether `wheel` is the distribution NAME==VERSION (wheel names use `_` for `-`)."""
    name, version = pin.split("==")
    return wheel.name.lower().startswith(f"{name.replace('-', '_').lower()}-{version}-")


# The worker and the contract it reads: the only products the GPU check runs.
PROJECT_PACKAGES = ("airt-worker", "airt-contract")


def build_project_wheels(dest: Path) -> list[Path]:
    """`uv build --wheel` of the worker and the contract into `dest` (older ones removed)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("airt_*.whl"):
        old.unlink()
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    for package in PROJECT_PACKAGES:
        subprocess.run(
            [uv, "build", "--wheel", "--quiet", "--package", package, "--out-dir", str(dest)],
            check=True,
            cwd=ROOT,
        )
    return sorted(dest.glob("airt_*.whl"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out: Path = DEFAULT_OUT, cache: Path | None = None) -> dict[str, object]:
    """Make the kit in `out`; return its manifest (also written as out/manifest.json).

    With `cache`, downloaded wheels are kept there and copied into `out` (the test builds a
    fresh kit per run without downloading again)."""
    versions = locked_versions()
    missing = [f"{n}=={versions[n]}" for n in MISSING]
    fallback = [f"{n}=={versions[n]}" for n in FALLBACK]
    pip = pip_command()
    wheels, spare = out / "wheels", out / "fallback"
    # Wheels of other versions (an older lock) would make two versions of one package.
    for folder, pins in ((wheels, missing), (spare, fallback)):
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {p.split("==")[0].replace("-", "_").lower() for p in pins}
        for w in folder.glob("*.whl"):
            stem = w.name.split("-")[0].lower()
            if stem in wanted and not any(_is(w, p) for p in pins):
                w.unlink()
        if cache is None:
            download(pip, pins, folder)
            continue
        store = cache / folder.name
        download(pip, pins, store)
        for pin in pins:
            (wheel,) = (w for w in store.glob("*.whl") if _is(w, pin))
            if not (folder / wheel.name).exists():
                shutil.copy2(wheel, folder / wheel.name)
    build_project_wheels(wheels)
    files = []
    for group, folder in (("wheels", wheels), ("fallback", spare)):
        for w in sorted(folder.glob("*.whl")):
            entry: dict[str, object] = {
                "file": f"{group}/{w.name}",
                "group": group,
                "bytes": w.stat().st_size,
                "sha256": sha256(w),
            }
            name = w.name.split("-")[0].replace("_", "-").lower()
            if group == "fallback":
                entry["name"] = name
                entry["requires"] = FALLBACK[name]
            files.append(entry)
    total = sum(int(str(f["bytes"])) for f in files)
    manifest: dict[str, object] = {
        "python": "cp312",
        "platforms": list(PLATFORMS),
        "files": files,
        "bytes": total,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if total > MAX_BYTES:
        raise RuntimeError(f"kit is {total / 2**20:.1f} MiB, over the 64 MiB the machine takes")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    manifest = build(args.out)
    size = int(str(manifest["bytes"]))
    files = manifest["files"]
    count = len(files) if isinstance(files, list) else 0
    print(f"{args.out}: {count} wheels, {size:,} bytes ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
