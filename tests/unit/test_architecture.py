"""The walls between airt's products hold: in the code (import-linter's contracts in
.importlinter) and in the tests (a product's tests import only that product, the contract and
the dev tooling).

Run in the unit tier; `make lint` runs the same import-linter contracts. The tests' rule is
checked here with the ast module because the tests are no package import-linter could read.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = {"airt_operator", "airt_worker", "airt_metrics", "airt_kubectl", "airt_mlserver"}
# Test folder → the products its tests may import (besides airt_contract and airt_dev). The
# e2e tier tests the products together and is the one place that may import several.
TEST_OWNERS = {
    "tests/unit/operator": {"airt_operator"},
    "tests/unit/api": {"airt_operator"},
    "tests/unit/chart": {"airt_operator"},
    "tests/cluster": {"airt_operator"},
    "tests/unit/worker": {"airt_worker"},
    "tests/worker": {"airt_worker"},
    "tests/unit/metrics": {"airt_metrics"},
    # The MLServer image's runtime (its NumPy part; MLServer itself runs in the image).
    "tests/unit/mlserver": {"airt_mlserver"},
    # The kubectl plugin's pure parts; its cluster tests run the `kubectl-airt` command itself.
    "tests/unit/kubectl": {"airt_kubectl"},
    "tests/unit/devtools": set(),
    "tests/unit/images": set(),
    # Where the operator's output meets the worker's parser: the contract's own tests.
    "tests/unit/contract": {"airt_operator", "airt_worker"},
}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_import_linter_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " broken" in proc.stdout and "0 broken" in proc.stdout, proc.stdout[-2000:]


@pytest.mark.parametrize("folder", sorted(TEST_OWNERS))
def test_a_products_tests_import_no_other_product(folder: str) -> None:
    allowed = TEST_OWNERS[folder]
    offenders = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        foreign = (_imported_roots(path) & PRODUCTS) - allowed
        if foreign:
            offenders.append(f"{path.relative_to(ROOT)}: {', '.join(sorted(foreign))}")
    assert not offenders, offenders


def test_every_test_folder_has_an_owner() -> None:
    folders = {
        str(p.parent.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("test_*.py")
        if not str(p.relative_to(ROOT)).startswith("tests/e2e")
    }
    owned = {f for f in folders if any(f == o or f.startswith(o + "/") for o in TEST_OWNERS)}
    assert folders - owned == {"tests/unit"}, folders - owned


def test_test_modules_have_unique_basenames() -> None:
    # The tiers have no __init__.py (pytest's rootdir import mode): two test files of one name in
    # different folders cannot both be collected.
    names: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert not {n: p for n, p in names.items() if len(p) > 1}
