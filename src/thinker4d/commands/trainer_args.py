"""What the training verbs (`dift`, `grpo`) share, following `trl sft` / `trl grpo`: trl's `TrlParser` over a script
dataclass, the trainer config and trl's [`ModelConfig`] (model, dtype, LoRA and quantization flags), a `--config`
file merged with the flags, and the model loading kwargs and peft config built from [`ModelConfig`] as trl's scripts
build them (`get_peft_config`, `get_quantization_config`)."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field

from trl import ModelConfig

from thinker4d.errors import UserValueError

from .options import input_errors, read_config, rename_config_keys, rename_flags, split_config


# The LLM's projections: the LoRA targets when --lora_target_modules is not given (the vision tower stays frozen;
# peft has no default targets for a thinker4d model type).
LLM_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class ModelArguments(ModelConfig):
    """trl's [`ModelConfig`]; only `dtype` defaults to `"auto"` (the checkpoint's own dtype, transformers' default)
    instead of trl's `"float32"`, and `lora_target_modules` also takes one comma-separated string."""

    dtype: str | None = field(
        default="auto",
        metadata={
            "help": "Load the model under this dtype ('auto': the dtype of the checkpoint's weights).",
            "choices": ["auto", "bfloat16", "float16", "float32"],
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.lora_target_modules, str) and "," in self.lora_target_modules:
            self.lora_target_modules = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]


def parse_trainer_args(parser, argv: list[str] | None, verb: str, renamed: dict[str, str] | None = None) -> tuple:
    """The dataclasses of a training verb's `TrlParser`, as `TrlParser.parse_args_and_config` makes them, with
    `--config=FILE` as well as `--config FILE`, deprecated flag names renamed (with a warning), and every mistake in
    the file (unknown key, bad `env:`) a [`UserError`] that names the file."""
    argv = rename_flags(list(sys.argv[1:] if argv is None else argv), verb, renamed)
    path, argv = split_config(argv)
    if path is not None:
        known = {action.dest for action in parser._actions} | {"env"} | set(renamed or ())
        values = rename_config_keys(read_config(path, verb, known=known), verb, renamed)
        env = values.pop("env", None) or {}
        if not isinstance(env, dict):
            raise UserValueError(f"{path}: `env` must be a mapping of environment variables, got {env!r}.")
        os.environ.update({str(k): str(v) for k, v in env.items()})
        parser.set_defaults_with_config(**values)
    with input_errors(ValueError):  # e.g. a trainer config value its __post_init__ refuses
        return parser.parse_args_into_dataclasses(argv)


def model_init_kwargs(model_args: ModelConfig, training_args) -> dict:
    """`from_pretrained` kwargs from the model flags, as trl's scripts build them; the trainer config's own
    `model_init_kwargs` win."""
    from trl import get_quantization_config

    kwargs = {"dtype": model_args.dtype}
    if model_args.model_revision != "main":
        kwargs["revision"] = model_args.model_revision
    if model_args.attn_implementation is not None:
        kwargs["attn_implementation"] = model_args.attn_implementation
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    return {**kwargs, **(training_args.model_init_kwargs or {})}


def peft_config(model_args: ModelConfig):
    """trl's `get_peft_config(model_args)` (`None` without `--use_peft`), with the LLM projections as the default
    LoRA targets."""
    from trl import get_peft_config

    if model_args.use_peft and model_args.lora_target_modules is None:
        model_args = dataclasses.replace(model_args, lora_target_modules=list(LLM_PROJECTIONS))
    return get_peft_config(model_args)


__all__ = ["LLM_PROJECTIONS", "ModelArguments", "model_init_kwargs", "parse_trainer_args", "peft_config"]
