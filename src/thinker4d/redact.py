"""Keeping credentials out of what thinker4d writes and uploads: credential-like keys are dropped from configs and
statistics, and a staged folder that contains the value of a secret environment variable is refused."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any


# Environment variables whose values must never reach a written file or a log line.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GEMINI_API_KEY", "GOOGLE_API_KEY")
_SECRET_KEY = re.compile(r"(^|_)(token|secret|password|api_key|apikey|credentials?)$", re.IGNORECASE)


def _secret_values() -> dict[str, str]:
    return {name: os.environ[name] for name in SECRET_ENV_VARS if len(os.environ.get(name, "")) >= 8}


def scrub(value: Any) -> Any:
    """Drop credential-like keys (`hub_token`, `api_key`, ...) and secret values from a JSON-like object."""
    secrets = set(_secret_values().values())
    if isinstance(value, Mapping):
        return {k: scrub(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str) and any(s in value for s in secrets):
        return "<redacted>"
    return value


def find_secrets(folder: str | os.PathLike, max_file_bytes: int = 256 * 2**20) -> list[tuple[str, str]]:
    """`(relative file, env var name)` for every file under `folder` containing the value of a secret env var."""
    secrets = {name: value.encode() for name, value in _secret_values().items()}
    hits = []
    if not secrets:
        return hits
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.stat().st_size > max_file_bytes:
            continue
        data = path.read_bytes()
        hits.extend((path.relative_to(root).as_posix(), name) for name, value in secrets.items() if value in data)
    return hits


def assert_no_secrets(folder: str | os.PathLike) -> None:
    """Raise when a file under `folder` contains the value of `HF_TOKEN`, `GEMINI_API_KEY`, ... (names only)."""
    hits = find_secrets(folder)
    if hits:
        listing = ", ".join(f"{f} ({name})" for f, name in hits)
        raise RuntimeError(
            f"Refusing to publish {folder}: these files contain the value of a secret environment variable: {listing}. "
            "Remove the secret from those files (or from the training config they were written from) and try again."
        )


__all__ = ["SECRET_ENV_VARS", "assert_no_secrets", "find_secrets", "scrub"]
