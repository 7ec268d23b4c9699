"""What every `rankserve` command shares: the console and how flags become settings."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from server.config import Settings

console = Console(stderr=True)


def settings_from(**overrides: Any) -> Settings:
    """CLI flags win over RANKSERVE_* env vars, which win over defaults; unset flags are left out."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
