"""Services import only cotdistill.common / cotdistill.v1 (and themselves); the library imports no service
and not the client; the client imports no service (it starts them through entry points)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("teacher", "trainer", "evaluator", "server")
LIBRARY_ALLOWED = ("common", "v1")
CLIENT_ALLOWED = ("common", "v1", "pipeline")


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


@pytest.mark.parametrize(("root", "allowed"), [("shared/src", LIBRARY_ALLOWED), ("client/src", CLIENT_ALLOWED)])
def test_library_and_client_import_no_service(root: str, allowed: tuple[str, ...]) -> None:
    files = list((REPO / root).rglob("*.py"))
    assert files, f"no sources under {root}"
    bad = [
        f"{f.relative_to(REPO)}:{line}: {mod}"
        for f in files
        for line, mod in cotdistill_imports(f)
        if second_part(mod) not in allowed
    ]
    assert not bad, f"{root} imports outside {allowed}:\n" + "\n".join(bad)


def test_the_library_holds_no_client_code() -> None:
    # The CLI, its jobs, demos and the modules only it uses live in client/ (cotdistill-client).
    assert not (REPO / "shared" / "src" / "cotdistill" / "pipeline").exists()
    for name in ("run_config", "reports", "tiny_models"):
        assert not (REPO / "shared" / "src" / "cotdistill" / "common" / f"{name}.py").exists(), name


def test_checker_catches_a_cross_service_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text(
        "import os\nfrom cotdistill.trainer import recipe\n\ndef f():\n    import cotdistill.server.app\n"
    )
    mods = [m for _, m in cotdistill_imports(sample)]
    assert mods == ["cotdistill.trainer", "cotdistill.server.app"]
