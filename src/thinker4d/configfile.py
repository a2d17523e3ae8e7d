"""Reading a settings file: the one reader behind every `--config FILE` and `SynthesisConfig.from_yaml`.

A settings file is a YAML mapping of setting names to values (JSON is YAML too, so a JSON object reads the same way;
an empty file is an empty mapping). Every mistake in it is a [`thinker4d.errors.UserError`] whose message names the
file and what to fix: the file is missing, is not YAML (with the line and column), is not a mapping, or has keys that
are not settings (listing the allowed ones).

Example:

```python
>>> from thinker4d.configfile import read_config
>>> read_config("recipe.yaml", allowed_keys={"model", "dataset"}, what="`thinker4d dift` flag")  # doctest: +SKIP
{'model': 'Qwen/Qwen2.5-VL-3B-Instruct', 'dataset': 'out/cot'}
```
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

from thinker4d.errors import UserFileNotFoundError, UserValueError


def read_config(
    path: str | os.PathLike,
    allowed_keys: Iterable[str] | None = None,
    what: str = "setting",
    flag: str | None = None,
    dashes: bool = False,
) -> dict:
    """The mapping in the YAML (or JSON) file `path`.

    Args:
        path (`str` or `os.PathLike`): the file.
        allowed_keys (`Iterable[str]`, *optional*): the keys the file may have; any other key is an error that lists
            them. `None` accepts every key.
        what (`str`, *optional*, defaults to `"setting"`): what one key is, for the messages (e.g. ``"`thinker4d
            dift` flag"``, `"synthesis setting"`).
        flag (`str`, *optional*): the command-line option that named the file (e.g. `"--config"`); messages about the
            file then start with `--config FILE`.
        dashes (`bool`, *optional*, defaults to `False`): read `-` in keys as `_`, so keys may be spelled as
            command-line flags are (`video-root` or `video_root`).

    Returns:
        `dict`: the mapping, with `str` keys.

    Raises:
        UserFileNotFoundError: `path` does not exist.
        UserValueError: `path` is a folder or cannot be read, is not valid YAML (the message gives the line and column),
            does not hold a mapping, or has a key outside `allowed_keys`.
    """
    import yaml

    where = f"{flag} {path}" if flag else str(path)
    if not os.path.exists(path):
        raise UserFileNotFoundError(f"{where}: the file does not exist; pass the path of a YAML file.")
    if not os.path.isfile(path):
        raise UserValueError(f"{where} is a folder, not a file; pass the path of a YAML file.")
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise UserValueError(f"{where} is not valid YAML: {_yaml_problem(e)}; fix that line.") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UserValueError(f"{where} cannot be read as a UTF-8 text file ({type(e).__name__}: {e}).") from e
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserValueError(
            f"{where} must hold a YAML mapping of {what}s (key: value lines), got a {type(values).__name__}."
        )
    values = {(str(k).replace("-", "_") if dashes else str(k)): v for k, v in values.items()}
    if allowed_keys is not None:
        allowed = sorted(set(allowed_keys))
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise UserValueError(f"{path}: unknown settings {unknown}; " + allowed_keys_hint(unknown, allowed, what))
    return values


def allowed_keys_hint(unknown: list[str], allowed: list[str], what: str) -> str:
    """`every key must be a <what>: <the allowed keys>`, plus `did you mean ...?` for keys that look like a typo."""
    close = {k: difflib.get_close_matches(k, allowed, n=1) for k in unknown}
    guesses = "; ".join(f"{k!r}: did you mean {m[0]!r}?" for k, m in close.items() if m)
    return f"every key must be a {what}: {', '.join(allowed)}" + (f" ({guesses})" if guesses else "") + "."


def _yaml_problem(e) -> str:
    """`line L, column C: <problem> (<context> at line L', column C')` of a PyYAML error, without the source excerpt
    PyYAML appends to its own text."""
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
    if mark is None or not problem:
        return str(e)
    out = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, where = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context:
        out += f" ({context}" + (f" at line {where.line + 1}, column {where.column + 1}" if where else "") + ")"
    return out


__all__ = ["allowed_keys_hint", "read_config"]
