"""What every `rankserve` command shares: the console and how flags become settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from server.config import Settings

console = Console(stderr=True)


if TYPE_CHECKING:
    from pipeline.experiments import Experiments


def parity_stop(exc: Exception, report: Path, advice: str) -> NoReturn:
    """A failed INT8 parity gate ends the command with its reason; no Triton repository was written."""
    console.print(f"[bold red]stopped:[/] {exc}. Nothing was published; the parity report is {report}. "
                  f"{advice}")
    raise typer.Exit(2) from exc


def load_experiments(path: Path, max_candidates: int | None = None) -> Experiments:
    """The experiments file, or exit 2 naming what is wrong with it (`serve`, `report`)."""
    from pipeline.experiments import Experiments

    try:
        return Experiments.load(path, max_candidates=max_candidates)
    except (OSError, ValueError) as e:
        console.print(f"[bold red]bad experiments file:[/] {e}")
        raise typer.Exit(2) from e


def settings_from(**overrides: Any) -> Settings:
    """CLI flags win over RANKSERVE_* env vars, which win over defaults; unset flags are left out."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


# How a client command reaches a secured server (server.client.Connection).
Token = Annotated[str | None, typer.Option(envvar="RANKSERVE_TOKEN", help="Bearer token.")]
TlsCa = Annotated[Path | None, typer.Option(help="PEM CA that signed the server's certificate.")]
TlsClientCert = Annotated[Path | None, typer.Option(help="PEM client certificate (mutual TLS).")]
TlsClientKey = Annotated[Path | None, typer.Option(help="PEM key of --tls-client-cert.")]
