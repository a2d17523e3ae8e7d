"""What every verb does the same way with its arguments: `--config FILE` / `--config=FILE`, checks of the paths a
user names, and turning input errors into [`UserError`]s (one line, exit status 2; see `thinker4d.errors`)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from pathlib import Path

from thinker4d.errors import UserError, UserFileNotFoundError, UserValueError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """`--help` with each flag's default, and the description and the example (epilog) kept as written."""


def group_inherited_options(parser: argparse.ArgumentParser, *sections: tuple[str, type]) -> None:
    """Moves the flags of inherited config fields out of the verb's own options, into one argument group per
    `(title, base dataclass)` of `sections` (most derived first), shown after the verb's own flags.

    `HfArgumentParser` puts all the fields of a dataclass in one group, so a trainer config's few own fields would
    otherwise be lost among the hundred-odd `TrainingArguments` flags.
    """
    names, claimed = [], set()
    for _, base in reversed(sections):  # a field goes to the most basic class that declares it
        own = {f.name for f in dataclasses.fields(base)} - claimed
        names.insert(0, own)
        claimed |= own
    for (title, _), fields in zip(sections, names):
        group = parser.add_argument_group(title)
        for action in list(parser._optionals._group_actions):
            if action.dest in fields:
                parser._optionals._group_actions.remove(action)
                group._group_actions.append(action)


def trainer_parser(
    parser_class, dataclass_types, verb: str, doc: str, usage: str, example: str, *sections: tuple[str, type]
):
    """The parser of a training verb: `parser_class` (`HfArgumentParser` or trl's `TrlParser`) over `dataclass_types`,
    with a short usage line, the first line of the verb's `doc` and an `example` on top, and the flags of each
    inherited config (`sections`, see [`group_inherited_options`]) after the verb's own."""
    parser = parser_class(
        dataclass_types,
        prog=f"thinker4d {verb}",
        usage=f"thinker4d {verb} {usage}",
        description=f"{doc.splitlines()[0]}\n\nexample:\n  thinker4d {verb} {example}",
        formatter_class=HelpFormatter,
    )
    group_inherited_options(parser, *sections)
    return parser


def split_config(argv: list[str]) -> tuple[str | None, list[str]]:
    """Takes `--config FILE` or `--config=FILE` out of `argv`; returns `(FILE or None, the other arguments)`."""
    path, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise UserValueError("--config needs the path of a YAML file, e.g. --config config.yaml.")
            path, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
            if not path:
                raise UserValueError("--config= needs the path of a YAML file, e.g. --config=config.yaml.")
        else:
            rest.append(arg)
        i += 1
    return path, rest


def read_config(path: str, verb: str, known: set[str] | None = None) -> dict:
    """The YAML mapping in `path` (keys are `thinker4d <verb>` flags, `-` or `_` alike), read by
    [`thinker4d.configfile.read_config`].

    Raises:
        UserError: the file is missing, is not YAML, is not a mapping, or (when `known` is given) has a key that is
            not one of the verb's flags.
    """
    from thinker4d.configfile import read_config as read_file

    allowed = None if known is None else set(known) - {"help", "config"}
    return read_file(path, allowed_keys=allowed, what=f"`thinker4d {verb}` flag", flag="--config", dashes=True)


def require_path(value: str | os.PathLike, flag: str, what: str = "file or folder") -> Path:
    """`value` as a `Path`; raises a [`UserError`] naming `flag` when it does not exist."""
    path = Path(value).expanduser()
    if not path.exists():
        raise UserFileNotFoundError(f"{flag} {value}: the local path does not exist; pass an existing {what}.")
    return path


def check_model(value: str, flag: str = "--model") -> None:
    """A model argument must be an existing local folder or look like a Hub id (`owner/name`).

    Without this check a mistyped local path reaches `from_pretrained`, which reports it as an invalid Hub repo id.
    """
    from thinker4d.datasets_io import is_hub_id

    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserValueError(
                f"{flag} {value} is a file; pass the checkpoint folder (the one holding config.json) or a Hub id."
            )
        return
    if not is_hub_id(value):
        raise UserFileNotFoundError(
            f"{flag} {value}: the local path does not exist; pass an existing checkpoint folder (the one holding "
            "config.json) or a Hub id such as Qwen/Qwen2.5-VL-3B-Instruct."
        )


@contextlib.contextmanager
def input_errors(*types: type[BaseException]):
    """Inside, the exceptions of `types` (default `ValueError`, `FileNotFoundError`) become [`UserError`]s.

    For the steps of a verb that only read what the user named (arguments, config, data set); their library code
    raises these with messages that name the file or row. Anything else keeps its traceback.
    """
    types = types or (ValueError, FileNotFoundError)
    try:
        yield
    except UserError:
        raise
    except types as e:
        raise UserError(str(e)) from e


__all__ = [
    "HelpFormatter",
    "check_model",
    "group_inherited_options",
    "input_errors",
    "read_config",
    "require_path",
    "split_config",
    "trainer_parser",
]
