"""What every `rankserve` command shares: the console and how flags become settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from server.config import Settings

console = Console(stderr=True)


def settings_from(**overrides: Any) -> Settings:
    """CLI flags win over RANKSERVE_* env vars, which win over defaults; unset flags are left out."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


# How a client command reaches a secured server (server.client.Connection).
Token = Annotated[str | None, typer.Option(envvar="RANKSERVE_TOKEN", help="Bearer token.")]
TlsCa = Annotated[Path | None, typer.Option(help="PEM CA that signed the server's certificate.")]
TlsClientCert = Annotated[Path | None, typer.Option(help="PEM client certificate (mutual TLS).")]
TlsClientKey = Annotated[Path | None, typer.Option(help="PEM key of --tls-client-cert.")]
