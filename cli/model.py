"""`rankserve model ...`: package a model, stage it as a version, and load or unload versions on Triton."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.shared import console, parity_stop, settings_from

model_app = typer.Typer(help="Served reranker models.", no_args_is_help=True)


@model_app.command("import")
def model_import(
    source: Annotated[Path, typer.Argument(
        help="Hugging Face cross-encoder folder (config, weights, tokenizer.json); a missing "
             "classification head starts fresh.")],
    out: Annotated[Path, typer.Option(help="Model directory to write (serve/eval/bench --model).")],
    catalog: Annotated[Path, typer.Option(help="Catalog whose judged pairs the INT8 parity gate reads.")],
    seed: Annotated[int, typer.Option(help="Seed of a fresh classification head.")] = 0,
    max_length: Annotated[int, typer.Option(help="Pair length in tokens the model is served with.")] = 64,
    precision: Annotated[str, typer.Option(help="int8 (quantised, parity-gated) or fp32.")] = "int8",
) -> None:
    """Package an existing cross-encoder without training: ONNX, INT8, parity gate, Triton repository."""
    from training.export import ParityError
    from training.import_model import import_cross_encoder

    if precision not in ("int8", "fp32"):
        raise typer.BadParameter("--precision must be int8 or fp32")
    try:
        report = import_cross_encoder(source, out, catalog, seed=seed, max_length=max_length,
                                      int8=precision == "int8")
    except ParityError as exc:  # INT8 ranks unlike FP32
        parity_stop(exc, out / "parity.json",
                    "A model whose scores barely separate items (a fresh head) may need --precision fp32.")
    console.print(f"parity: {report['parity']}")
    console.print(f"served model → {out} (Triton repository {out / 'triton'})")


TritonUrl = Annotated[str | None, typer.Option(
    "--triton-url", help="The Triton the server uses (HOST:PORT of its gRPC port; default: "
                         "RANKSERVE_TRITON_URL, else 127.0.0.1:RANKSERVE_TRITON_GRPC_PORT).")]
TritonModel = Annotated[str | None, typer.Option(
    help="Model name in the repository (reranker, reranker_onnx).")]


def _triton_control(url: str | None, model: str | None, action: Any) -> Any:
    """Run ``action(client)`` against Triton's model-control API; a failure exits 1 with its reason."""
    from engines.rerank import RerankerUnavailable
    from engines.triton_rerank import TritonRerankerClient

    s = settings_from(triton_url=url, triton_model=model)
    target = s.triton_url or (f"{s.triton_host}:{s.triton_grpc_port}" if s.triton_grpc_port else None)
    if target is None:
        raise typer.BadParameter("name the Triton: --triton-url or RANKSERVE_TRITON_GRPC_PORT")

    async def run() -> Any:
        client = TritonRerankerClient(target, model=s.triton_model, timeout_s=10.0)
        try:
            return await action(client)
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    except ValueError as exc:  # a request Triton must not get (unloading the last version)
        raise typer.BadParameter(str(exc)) from exc
    except RerankerUnavailable as exc:
        console.print(f"[bold red]failed:[/] {exc}")
        raise typer.Exit(1) from exc


@model_app.command("stage")
def model_stage(
    source: Annotated[Path, typer.Argument(
        help="Model directory (train/import output) to add as a version.")],
    model: Annotated[Path, typer.Option(help="The served model directory whose repository gains it.")],
) -> None:
    """Add a model as the next version of a served Triton repository (then `model load` it)."""
    from engines.model_dir import stage_version

    try:
        version = stage_version(source, model)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(version)
    console.print(f"staged {source} as version {version} of {model / 'triton'}")


@model_app.command("versions")
def model_versions(triton_url: TritonUrl = None, triton_model: TritonModel = None) -> None:
    """The reranker versions Triton holds, with their state."""
    states = _triton_control(triton_url, triton_model, lambda c: c.versions())
    for version, state in sorted(states.items(), key=lambda kv: int(kv[0])):
        typer.echo(f"{version}\t{state}")


@model_app.command("load")
def model_load(version: Annotated[int, typer.Argument(help="Version number to load.")],
               triton_url: TritonUrl = None, triton_model: TritonModel = None) -> None:
    """Load a version beside the loaded ones, without restarting anything (an arm may then name it)."""
    async def load(c: Any) -> list[str]:
        await c.load_versions({*await c.ready_versions(), str(version)})
        return await c.ready_versions()

    console.print(f"loaded: {', '.join(_triton_control(triton_url, triton_model, load))}")


@model_app.command("unload")
def model_unload(version: Annotated[int, typer.Argument(help="Version number to unload.")],
                 triton_url: TritonUrl = None, triton_model: TritonModel = None) -> None:
    """Unload one version; the others keep serving (the last one cannot be unloaded)."""
    async def unload(c: Any) -> list[str]:
        ready = set(await c.ready_versions())
        if str(version) not in ready:
            loaded = ", ".join(sorted(ready)) or "none"
            raise ValueError(f"version {version} is not loaded (loaded: {loaded})")
        await c.load_versions(ready - {str(version)})
        return await c.ready_versions()

    console.print(f"loaded: {', '.join(_triton_control(triton_url, triton_model, unload))}")
