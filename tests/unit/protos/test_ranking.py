"""Generated stubs are never stale: regenerate them and compare with the committed files."""

from __future__ import annotations

from pathlib import Path

from protos.generate import ROOT, generate


def test_generated_stubs_match_proto(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert written, "no .proto files found"
    for proto in written:
        rel = proto.relative_to(tmp_path).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            fresh = tmp_path / f"{rel}{suffix}"
            committed = ROOT / f"{rel}{suffix}"
            assert committed.exists(), f"missing generated file {committed}: run `make proto`"
            assert fresh.read_text() == committed.read_text(), f"{committed} is stale: run `make proto`"


def test_service_shape() -> None:
    from protos.ranking.v1 import ranking_pb2

    service = ranking_pb2.DESCRIPTOR.services_by_name["Ranker"]
    rank = service.methods_by_name["Rank"]
    assert service.full_name == "ranking.v1.Ranker"
    assert rank.server_streaming and not rank.client_streaming
    oneof = ranking_pb2.RankResponse.DESCRIPTOR.oneofs_by_name["kind"]
    assert {f.name for f in oneof.fields} == {"item", "summary"}
