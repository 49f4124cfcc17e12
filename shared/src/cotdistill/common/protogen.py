"""Generate (or check) the Python gRPC code of ``protos/`` with grpcio-tools.

``python -m cotdistill.common.protogen PROTOS OUT [--check]``: writes ``*_pb2.py``, ``*_pb2.pyi``
and ``*_pb2_grpc.py`` under OUT; with ``--check`` writes nothing and exits 1 listing every file
that differs from what generation would produce (CI runs this to catch stale committed code).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

PACKAGE_DIR = Path("cotdistill/v1")


def generate(protos: Path, dest: Path) -> list[Path]:
    """Run protoc over every ``protos/cotdistill/v1/*.proto`` into ``dest``; returns written files."""
    from grpc_tools import protoc

    sources = sorted((protos / PACKAGE_DIR).glob("*.proto"))
    if not sources:
        raise SystemExit(f"no .proto files under {protos / PACKAGE_DIR}")
    well_known = str(files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{protos}",
        f"-I{well_known}",
        f"--python_out={dest}",
        f"--pyi_out={dest}",
        f"--grpc_python_out={dest}",
        *(str(s) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((dest / PACKAGE_DIR).glob("*_pb2*.py*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("protos", type=Path)
    parser.add_argument("out", type=Path, help="the cotdistill/v1 package directory")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(args.protos, Path(tmp))
        names = {p.name for p in generated}
        existing = {p.name for p in args.out.glob("*_pb2*.py*")}
        if args.check:
            stale = [
                n
                for n in sorted(names)
                if n not in existing or not filecmp.cmp(Path(tmp) / PACKAGE_DIR / n, args.out / n, shallow=False)
            ]
            extra = sorted(existing - names)
            if stale or extra:
                for n in stale:
                    print(f"protos-check: {args.out / n} differs from protos/ (run `make protos`)", file=sys.stderr)
                for n in extra:
                    print(f"protos-check: {args.out / n} has no .proto source", file=sys.stderr)
                return 1
            print(f"protos-check: {len(names)} generated files match protos/")
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        for n in sorted(existing - names):
            (args.out / n).unlink()
        for path in generated:
            shutil.copyfile(path, args.out / path.name)
        print(f"protos: wrote {len(generated)} files to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
