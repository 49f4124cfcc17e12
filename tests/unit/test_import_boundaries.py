"""Services import only cotdistill.common / cotdistill.v1 (and themselves); shared code imports no service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("teacher", "trainer", "evaluator", "server")
SHARED_ALLOWED = ("common", "v1", "pipeline")


def cotdistill_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``cotdistill.*`` import in a file, including lazy ones."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("cotdistill")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cotdistill":
                found += [(node.lineno, f"cotdistill.{a.name}") for a in node.names]
            elif node.module.startswith("cotdistill."):
                found.append((node.lineno, node.module))
    return found


def second_part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_only_common_v1_and_itself(service: str) -> None:
    root = REPO / "services" / service / "src"
    files = list(root.rglob("*.py"))
    assert files, f"no sources under {root}"
    bad = [
        f"{f.relative_to(REPO)}:{line}: {mod}"
        for f in files
        for line, mod in cotdistill_imports(f)
        if second_part(mod) not in ("common", "v1", service)
    ]
    assert not bad, "service imports another service or the CLI:\n" + "\n".join(bad)


def test_shared_code_imports_no_service() -> None:
    files = list((REPO / "shared" / "src").rglob("*.py"))
    bad = [
        f"{f.relative_to(REPO)}:{line}: {mod}"
        for f in files
        for line, mod in cotdistill_imports(f)
        if second_part(mod) not in SHARED_ALLOWED
    ]
    assert not bad, "shared code imports a service:\n" + "\n".join(bad)


def test_common_does_not_import_the_cli() -> None:
    files = list((REPO / "shared" / "src" / "cotdistill" / "common").rglob("*.py"))
    bad = [f"{f.name}:{line}" for f in files for line, mod in cotdistill_imports(f) if second_part(mod) == "pipeline"]
    assert not bad, f"cotdistill.common must not depend on the CLI: {bad}"


def test_checker_catches_a_cross_service_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text(
        "import os\nfrom cotdistill.trainer import recipe\n\ndef f():\n    import cotdistill.server.app\n"
    )
    mods = [m for _, m in cotdistill_imports(sample)]
    assert mods == ["cotdistill.trainer", "cotdistill.server.app"]
