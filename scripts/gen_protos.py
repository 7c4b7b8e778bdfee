"""Generate the Python gRPC code in clients/retailface/v1 from protos/.

The generated modules are committed so that the client package installs with only
grpcio and protobuf; tests/test_protos_fresh.py fails when they are stale.

    python scripts/gen_protos.py            # regenerate in place
    python scripts/gen_protos.py --out DIR  # generate elsewhere (used by the staleness test)
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "clients"


def generate(out_dir: Path) -> list[Path]:
    """Runs protoc for every .proto under protos/ and returns the generated files."""
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    package_dir = out_dir / "retailface" / "v1"
    (package_dir / "__init__.py").write_text('"""Generated gRPC code for retailface.v1 (scripts/gen_protos.py)."""\n')
    return sorted(package_dir.glob("*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output root (default: clients/)")
    args = parser.parse_args()
    files = generate(args.out)
    print(f"generated {len(files)} files under {args.out / 'retailface' / 'v1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
