"""Schemathesis fuzzes every operation of the OpenAPI spec: no 5xx, and no status the spec does not document.

Bounded: a few examples per operation (valid and invalid bodies) and a wall-time cap.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.integration.conftest import tool
from tests.integration.server.conftest import API_KEY, server_settings, start_server


def test_fuzzing_the_openapi_spec_finds_no_server_error(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    server = start_server(server_settings(tiny_models["student"], max_tokens_cap=8, max_n=2, max_prompt_tokens=256))
    try:
        result = subprocess.run(
            [
                tool("schemathesis"),
                "run",
                f"{server.base_url}/openapi.json",
                "--checks",
                "not_a_server_error,status_code_conformance",
                "--exclude-path",
                "/admin/reload",  # reloading per example only measures load time; test_reload covers it
                "--max-examples",
                "8",
                "--max-time",
                "20",
                "--seed",
                "7",
                "--workers",
                "1",
                "--request-timeout",
                "30",
                "--header",
                f"Authorization: Bearer {API_KEY}",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        tested = re.search(r"(\d+) generated, (\d+) passed", output)
        assert tested is not None and tested.group(1) == tested.group(2) and int(tested.group(1)) >= 20, output[-2000:]
        assert re.search(r"Tested: ([6-9]|\d\d)", output), output[-2000:]  # every operation but /admin/reload
    finally:
        server.stop()
