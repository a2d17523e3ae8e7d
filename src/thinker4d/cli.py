"""`thinker4d <verb>`: a thin dispatcher. Each verb lives in `thinker4d.commands.<verb>` with `make_parser()` and
`main(argv=None)`, so every verb is also usable from Python.

A mistake of the user ([`thinker4d.errors.UserError`]: a bad flag value, a missing file, a bad config or data row)
prints one `thinker4d <verb>: error: ...` line and exits with status 2; `--debug` (anywhere on the command line) or
`THINKER4D_DEBUG=1` prints its traceback too. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
import threading
import traceback

from thinker4d.errors import UserError


VERBS = {
    "demo": "Offline latent-decoding demo on a tiny in-process model (no download).",
    "world": "Render synthetic 4D-world clips with exact geometry (SpatialVID-style layout).",
    "synthdsr": "Build the held-out SynthDSR benchmark from the synthetic world.",
    "synthesize": "Run the 4D chain-of-thought data synthesis pipeline.",
    "dift": "Dynamic-Imagery Fine-Tuning (DIFT).",
    "grpo": "4DRL: GRPO with latent imagery rollouts (LatentGRPOTrainer).",
    "eval": "Evaluate a model on a benchmark (DSR-Bench, SynthDSR, ...).",
    "push": "Push a checkpoint or dataset to the Hugging Face Hub.",
    "quickstart": "The offline end-to-end main job: world -> synthesis -> DIFT -> GRPO -> eval.",
}


def _available() -> dict[str, str]:
    out = {}
    for verb, help_ in VERBS.items():
        if importlib.util.find_spec(f"thinker4d.commands.{verb}") is not None:
            out[verb] = help_
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = _available()
    parser = argparse.ArgumentParser(
        prog="thinker4d",
        description="Vision-language models that think with 4D latent imagery.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="verbs:\n" + "\n".join(f"  {v:<12} {h}" for v, h in verbs.items()),
    )
    parser.add_argument("verb", choices=sorted(verbs), help="what to run; `thinker4d <verb> --help` for its options")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="print the traceback of an input error too")
    debug = os.environ.get("THINKER4D_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help", "--version"):
        parser.parse_args(argv)
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in verbs:
        parser.error(f"unknown verb {verb!r}; choose one of: {', '.join(sorted(verbs))}")
    module = importlib.import_module(f"thinker4d.commands.{verb}")
    if "--debug" in rest:
        debug, rest = _take_debug(module, rest, debug)
    # Our Ctrl-C handler only replaces Python's default one, and only for the verb's run (main() is usable from Python).
    ours = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is (
        signal.default_int_handler
    )
    if ours:
        signal.signal(signal.SIGINT, _interrupt)
    try:
        result = module.main(rest)
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f"thinker4d {verb}: error: {e}", file=sys.stderr)
        if not debug:
            print("(run with --debug or THINKER4D_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return int(result or 0)


def _take_debug(module, rest: list[str], debug: bool) -> tuple[bool, list[str]]:
    """Takes thinker4d's `--debug` out of a verb's arguments.

    `TrainingArguments` (the `dift` and `grpo` verbs) has a `--debug MODE` option of its own: there only a bare
    `--debug` (last, or followed by another flag) is ours, and `--debug underflow_overflow` is left to the verb.
    """
    own = any("--debug" in action.option_strings for action in getattr(module.make_parser(), "_actions", []))
    out = []
    for i, arg in enumerate(rest):
        bare = i + 1 == len(rest) or rest[i + 1].startswith("-")
        if arg == "--debug" and (not own or bare):
            debug = True
        else:
            out.append(arg)
    return debug, out


def _interrupt(signum, frame) -> None:
    """Ctrl-C: raise `KeyboardInterrupt`, as Python's default handler does, except while a `__del__` finalizer runs.

    Python drops an exception raised in `__del__` (it prints "Exception ignored in ..."), so a Ctrl-C that arrived while
    the garbage collector finalized an object was lost and the job went on; in the toy quickstart that was about 1
    run in 10, in `datasets`' `Dataset.__del__`. There the signal is raised again 50 ms later, outside the finalizer.
    """
    f = frame
    while f is not None:
        if f.f_code.co_name == "__del__":
            timer = threading.Timer(0.05, signal.raise_signal, (signum,))
            timer.daemon = True
            timer.start()
            return
        f = f.f_back
    raise KeyboardInterrupt


def _version() -> str:
    from thinker4d import __version__

    return f"thinker4d {__version__}"


if __name__ == "__main__":
    sys.exit(main())
