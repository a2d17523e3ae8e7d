"""What every verb does the same way with its arguments: `--config FILE` / `--config=FILE`, checks of the paths a
user names, and turning input errors into [`UserError`]s (one line, exit status 2; see `thinker4d.errors`)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
from pathlib import Path

from thinker4d.errors import UserError, UserFileNotFoundError, UserValueError


logger = logging.getLogger("thinker4d.cli")


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


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Adds `--config YAML` (also `--config=YAML`) to an argparse verb; see [`parse_verb_args`]."""
    parser.add_argument(
        "--config", metavar="YAML", help="YAML file whose keys are these flags (- or _ alike); flags override it"
    )


def accept_both_spellings(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Lets every `--x_y` flag of `parser` also be spelled `--x-y` and the other way round, as `HfArgumentParser`
    does for the training verbs, so one name works on every verb whichever separator a user types."""
    for action in list(parser._actions):
        for option in list(action.option_strings):
            if not option.startswith("--"):
                continue
            for twin in (option.replace("_", "-"), "--" + option[2:].replace("-", "_")):
                if twin not in parser._option_string_actions:
                    action.option_strings.append(twin)
                    parser._option_string_actions[twin] = action
    return parser


def rename_flags(argv: list[str], verb: str, renamed: dict[str, str] | None) -> list[str]:
    """`argv` with the deprecated flag names of `renamed` (old name: new flag, both without `--` and with `_`)
    replaced by the new ones, with one deprecation line per old name on stderr (a `thinker4d.cli` log warning).

    A new flag may be a flag with its value (`"repo_type dataset"` for a former switch). `-` and `_` are alike in
    the old names, and `--old=value` works as well as `--old value`.
    """
    if not renamed:
        return list(argv)
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        old = name[2:].replace("-", "_") if name.startswith("--") else None
        if old not in renamed:
            out.append(arg)
            continue
        new = renamed[old].split()
        warn_renamed(verb, f"`{name}`", f"`--{' '.join(new)}`")
        out += [f"--{new[0]}={value}"] if eq else ["--" + new[0], *new[1:]]
    return out


def warn_renamed(verb: str, old: str, new: str) -> None:
    """The one-line deprecation message of a renamed flag or --config key."""
    logger.warning("thinker4d %s: %s is deprecated and will be removed in the next release; use %s.", verb, old, new)


def rename_config_keys(values: dict, verb: str, renamed: dict[str, str] | None) -> dict:
    """The keys of a `--config` mapping with the deprecated names of `renamed` replaced (see [`rename_flags`])."""
    out = {}
    for key, value in values.items():
        if renamed and key in renamed:
            new = renamed[key].split()
            warn_renamed(
                verb, f"the --config key `{key}`", f"`{new[0]}`" if len(new) == 1 else f"`{new[0]}: {new[1]}`"
            )
            if len(new) > 1 and not value:  # a former switch set to false: the new flag keeps its default
                continue
            key, value = new[0], value if len(new) == 1 else new[1]
        out[key] = value
    return out


def set_config_defaults(parser: argparse.ArgumentParser, values: dict) -> None:
    """The values of a `--config` file become `parser`'s defaults; a flag the file sets is no longer required."""
    for action in parser._actions:
        if action.dest in values:
            action.default = values[action.dest]
            action.required = False


def parse_verb_args(
    parser: argparse.ArgumentParser, argv: list[str] | None, verb: str, renamed: dict[str, str] | None = None
) -> argparse.Namespace:
    """Parses the arguments of an argparse verb: deprecated names renamed (with a warning), `--config FILE` or
    `--config=FILE` read (its keys are the verb's flags), then the command line, whose flags override the file."""
    argv = rename_flags(list(sys.argv[1:] if argv is None else argv), verb, renamed)
    path, argv = split_config(argv)
    if path is not None:
        known = {a.dest for a in parser._actions} | set(renamed or ())
        set_config_defaults(parser, rename_config_keys(read_config(path, verb, known=known), verb, renamed))
    return parser.parse_args(argv)


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


def check_model(value: str, flag: str = "--model_name_or_path") -> None:
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
    "accept_both_spellings",
    "add_config_option",
    "check_model",
    "group_inherited_options",
    "input_errors",
    "parse_verb_args",
    "read_config",
    "rename_config_keys",
    "rename_flags",
    "require_path",
    "set_config_defaults",
    "split_config",
    "trainer_parser",
]
