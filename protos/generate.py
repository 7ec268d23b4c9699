"""Generate the Python gRPC stubs for every .proto under protos/ (run: python -m protos.generate).

Stubs are generated with the repository root as the include path, so they import as
`protos.ranking.v1.ranking_pb2`; a test regenerates them and fails if the committed ones are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


RELEASED = ROOT / "protos" / "released"  # the last released API, for `buf breaking` only (no stubs)


def proto_files() -> list[Path]:
    return sorted(p for p in (ROOT / "protos").rglob("*.proto") if RELEASED not in p.parents)


def generate(out_dir: Path = ROOT) -> list[Path]:
    from grpc_tools import protoc

    include = str(Path(protoc.__file__).parent / "_proto")
    files = [str(p.relative_to(ROOT)) for p in proto_files()]
    args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}", *files]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return [out_dir / f for f in files]


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
