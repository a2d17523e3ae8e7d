"""Hub-ready model folders: a thinker4d model saved with its processor, remote code, `custom_generate/` and card
([`save_for_hub`]), or a training checkpoint staged for `thinker4d push` ([`stage_model_checkpoint`])."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from transformers import AutoConfig

from ..models import check_latent_tokens, latent_token_ids
from ..models.auto import MODEL_CLASSES
from ..redact import assert_no_secrets
from .cards import render_model_card
from .remote_code import _check_model_type, _read_config, write_custom_generate, write_remote_code
from .training_record import read_training_record


# Files of a training checkpoint that belong on the Hub (optimizer state, RNG state and pickles do not).
_CHECKPOINT_FILES = re.compile(
    r"^(config\.json|generation_config\.json|.*\.safetensors|model\.safetensors\.index\.json|tokenizer\.json|"
    r"tokenizer_config\.json|special_tokens_map\.json|added_tokens\.json|vocab\.json|merges\.txt|"
    r"chat_template\.(jinja|json)|processor_config\.json|preprocessor_config\.json|video_preprocessor_config\.json)$"
)


def finalize_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    custom_generate: bool = True,
    card: bool = True,
    **card_kwargs,
) -> Path:
    """Make a saved thinker4d folder Hub-ready: remote code + `auto_map`, `custom_generate/`, README.md, secret check.

    `card_kwargs` go to [`render_model_card`].
    """
    folder = Path(folder)
    write_remote_code(folder)
    if custom_generate:
        write_custom_generate(folder, model_id=repo_id)
    if card:
        (folder / "README.md").write_text(render_model_card(_read_config(folder), repo_id, **card_kwargs))
    assert_no_secrets(folder)
    return folder


def save_for_hub(
    model,
    processor,
    output_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    custom_generate: bool = True,
    card: bool = True,
    **card_kwargs,
) -> Path:
    """Save a thinker4d model and its processor as a Hub-ready folder.

    The folder loads with `AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True)` (no thinker4d
    install needed; `generate` feeds latents back), carries `custom_generate/` for stock-class models, the processor
    (latent tokens and chat template) and a model card.

    Args:
        model ([`Thinker4DQwen2_5_VLForConditionalGeneration`] or [`Thinker4DQwen3VLForConditionalGeneration`]).
        processor: its processor (must contain the three latent tokens with the config's ids).
        output_dir (`str` or `os.PathLike`): where to write.
        repo_id (`str`, *optional*): Hub id used in the card and snippets; defaults to `output_dir`.
        custom_generate (`bool`, defaults to `True`), card (`bool`, defaults to `True`): what to add.
        card_kwargs: `base_model`, `datasets`, `training_args`, `eval_summaries`, `license`, `stages`,
            `training_stages`, `trainer_state` (see [`render_model_card`]). A model in memory records no stages:
            pass `training_stages=read_training_record(folder)["stages"]` for one saved by a thinker4d trainer.

    Returns:
        `Path` of the folder.
    """
    if getattr(model.config, "model_type", None) not in MODEL_CLASSES:
        raise TypeError(
            f"save_for_hub needs a thinker4d model, got {type(model).__name__} (model_type "
            f"{getattr(model.config, 'model_type', None)!r}). Convert it first: "
            "`model, processor = thinker4d.from_base(model, processor)`."
        )
    latent_token_ids(model.config)
    check_latent_tokens(getattr(processor, "tokenizer", processor), model.config)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return finalize_model_folder(
        output_dir, repo_id or str(output_dir), custom_generate=custom_generate, card=card, **card_kwargs
    )


def stage_model_checkpoint(
    checkpoint: str | os.PathLike, output_dir: str | os.PathLike, repo_id: str, **kwargs
) -> Path:
    """Write the folder `thinker4d push` uploads for a training checkpoint: weights, config, processor files, remote
    code, `custom_generate/` and the card. Optimizer/RNG state, pickles and stale `.py` files are left out.

    The card is built from what the checkpoint records ([`read_training_record`]): the stages of
    `training_stages.json`, the steps and loss of `trainer_state.json`, and the hyper-parameters of `training_args`
    when given, else of `training_args.json` / `trainer_config.json` / `training_args.bin` in the checkpoint. Other
    keyword arguments go to [`finalize_model_folder`].
    """
    from transformers import AutoTokenizer

    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    _check_model_type(checkpoint, _read_config(checkpoint))
    config = AutoConfig.from_pretrained(checkpoint)
    latent_token_ids(config)
    check_latent_tokens(AutoTokenizer.from_pretrained(checkpoint), config)
    files = sorted(p for p in checkpoint.iterdir() if p.is_file() and _CHECKPOINT_FILES.match(p.name))
    if not any(p.name.endswith(".safetensors") for p in files):
        raise FileNotFoundError(f"{checkpoint} has no *.safetensors weights; save the model with save_pretrained().")
    record = read_training_record(checkpoint, need_args=kwargs.get("training_args") is None)
    if kwargs.get("training_args") is None:
        kwargs["training_args"] = record["training_args"]
        kwargs.setdefault("config_class", record["config_class"])
    kwargs.setdefault("training_stages", record["stages"])
    kwargs.setdefault("trainer_state", record["trainer_state"])
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copyfile(path, output_dir / path.name)
    return finalize_model_folder(output_dir, repo_id, **kwargs)


__all__ = ["finalize_model_folder", "save_for_hub", "stage_model_checkpoint"]
