"""The jinja templates shipped in `thinker4d/templates/` (model and dataset cards, the `custom_generate/` README), and
how a card writes a recorded value. Shared by the dataset card (`thinker4d.data.card`) and the Hub package."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def _templates_dir() -> Path:
    return Path(__file__).resolve().parent / "templates"


def _card_templates_dir() -> Path:
    # The templates ship inside the package (templates/model_cards/); the repository's model_cards/ links there.
    candidate = _templates_dir() / "model_cards"
    if (candidate / "model_card.md.jinja").is_file():
        return candidate
    raise FileNotFoundError(
        "Card templates not found: expected model_cards/model_card.md.jinja at the repository root or "
        "thinker4d/templates/model_cards/ in the installed package. Reinstall thinker4d from a full source checkout."
    )


def _jinja(directory: Path):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _render_card(template: str, **values) -> str:
    text = _jinja(_card_templates_dir()).get_template(template).render(thinker4d_version=_version(), **values)
    return re.sub(r"\n{3,}", "\n\n", text)


def _version() -> str:
    from . import __version__

    return __version__


def _fmt(value: Any) -> str:
    """A recorded value as the text of a card table cell."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple, dict)):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return str(value).replace("|", "\\|").replace("\n", " ")
