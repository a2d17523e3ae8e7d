"""DIFT (Dynamic-Imagery Fine-Tuning): supervised fine-tuning on 4D chains of thought whose imagery blocks are
teacher-forced with pooled overlay features and regressed with a cosine loss.

Paper: https://huggingface.co/papers/2605.05997. What differs from the paper's `CustomTrainerStage1`
(docs/paper_differences.md, sections 1, 2, 4 and 5):

1. A `transformers.Trainer` subclass that overrides `compute_loss` (the loss), `log` (the extra metrics), the
   checkpoint loader and `_save` (the class docstring lists them), and accepts Trainer's arguments
   (`compute_metrics`, `model_init`, ...); the model's forward takes the latent arguments itself, so nothing is
   monkey-patched and ZeRO-3 works.
2. No OOM / NaN guard: a failing batch raises instead of silently becoming a zero loss.
3. The imagery targets can be pooled once and cached with the data set (`cache_imagery_targets`), so a step costs
   about what an SFT step costs; the paper ran the vision tower on every overlay at every step.
4. The new token rows are mean-initialised by `thinker4d.from_base` (the paper's init never ran).
5. The CE term is the mean over the micro-batch's label tokens, and the imagery term the mean over its latent slots
   (the paper's per-GPU batch was 1, where the two agree).
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer, set_seed

from ..models import THINKER4D_CLASSES, check_latent_tokens, from_base
from ..models.conversion import unwrap_latent_model
from .checkpointing import load_thinker4d_checkpoint
from .dift_collator import DIFTDataCollator
from .dift_config import DIFTConfig
from .dift_data import cache_imagery_targets, prepare_dift_dataset
from .records import write_training_record


logger = logging.getLogger(__name__)


def with_latent_token_rows(peft_config, config):
    """`peft_config` with the input-embedding rows of `<|latent_start|>` and `<|latent_end|>` trainable.

    The latent tokens are new rows (mean-initialised by `thinker4d.from_base`); LoRA adapts the layers only, so without
    this they would never be trained. Applies to PEFT configs that have `trainable_token_indices` (LoRA) and leave it
    unset; a config that sets it, or another PEFT method, is returned unchanged. The `<|latent_pad|>` row is not
    included: the slots' inputs are always overwritten by latent vectors. An untied output layer keeps its
    mean-initialised rows (PEFT trains token rows of embeddings only).
    """
    if not hasattr(peft_config, "trainable_token_indices") or peft_config.trainable_token_indices is not None:
        return peft_config
    peft_config = copy.deepcopy(peft_config)
    peft_config.trainable_token_indices = [config.latent_start_id, config.latent_end_id]
    logger.info("PEFT: training the input-embedding rows of the latent start/end tokens too.")
    return peft_config


def vision_tower(model) -> torch.nn.Module:
    """The vision tower (ViT + merger) of a (possibly wrapped) thinker4d model."""
    return unwrap_latent_model(model).model.visual


def freeze_vision_tower(model) -> None:
    """`requires_grad=False` and eval mode for the vision tower and its merger (the paper freezes both)."""
    visual = vision_tower(model)
    visual.requires_grad_(False)
    visual.eval()


def imagery_loss(
    last_hidden_state: torch.Tensor, input_ids: torch.Tensor, targets: torch.Tensor, latent_pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`mean(1 - cos(h[p-1], z[p]))` over latent slots p, in fp32, with the targets detached.

    Args:
        last_hidden_state (`torch.Tensor` of shape `(batch, seq, hidden)`): post-norm last-layer states.
        input_ids (`torch.LongTensor` of shape `(batch, seq)`): slots are the `latent_pad_id` positions.
        targets (`torch.Tensor` of shape `(num_slots, hidden)`): the vectors placed at the slots, row-major.
        latent_pad_id (`int`): id of `<|latent_pad|>`.

    Returns:
        `(loss, mean_cos)`, both scalars.
    """
    slots = input_ids == latent_pad_id
    pred = last_hidden_state[:, :-1][slots[:, 1:]].float()
    target = targets.detach().reshape(-1, last_hidden_state.shape[-1]).float()
    if pred.shape[0] != target.shape[0]:
        raise ValueError(f"{pred.shape[0]} latent slots (after position 0) but {target.shape[0]} target vectors.")
    cos = (F.normalize(pred, dim=-1) * F.normalize(target, dim=-1)).sum(-1)
    return (1.0 - cos).mean(), cos.mean().detach()


def causal_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy in fp32, averaged over the label positions (`labels != -100`)."""
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )


class DIFTTrainer(Trainer):
    r"""Trainer for Dynamic-Imagery Fine-Tuning (DIFT), in the style of trl's `SFTTrainer`.

    Overridden methods (everything else is the stock [`~transformers.Trainer`]):

    - `__init__`: loads or converts the model ([`thinker4d.from_base`]), applies `peft_config`, freezes the vision
      tower, builds the default [`DIFTDataCollator`] and prepares each split
      ([`~thinker4d.trainers.dift_data.prepare_dift_dataset`]) before calling `super().__init__`.

    - `compute_loss`: `ce_weight * CE + imagery_weight * mean(1 - cos(h[p-1], z[p]))`; with `return_outputs` the
      outputs are the model's, less the two DIFT requests for itself (`last_hidden_state`, `latent_embeds`).
    - `log`: adds `ce_loss`, `imagery_loss`, `imagery_cos`.
    - `_load_from_checkpoint`: loads thinker4d checkpoints through `from_pretrained`'s key mapping on resume.
    - `_save`: also writes `training_args.json`, `trainer_state.json` and `training_stages.json`
      (`thinker4d.trainers.records`), so a model card can say how the folder was made.

    Args:
        model (`str` or `PreTrainedModel`, *optional*):
            A Hub id / local folder or a model object. Stock Qwen2.5-VL / Qwen3-VL checkpoints are converted with
            [`thinker4d.from_base`]; thinker4d checkpoints are used as they are. Give it or `model_init`.
        args ([`DIFTConfig`], *optional*): defaults to `DIFTConfig(output_dir="<model name>-DIFT")`.
        data_collator (*optional*): defaults to a [`DIFTDataCollator`] built from `args`.
        train_dataset / eval_dataset (`datasets.Dataset`): rows in the 4D CoT schema (docs/dift.md), or in the paper's
            JSONL layout (`text_input`, `text_output`, `image_input`, `image_output`), converted on the fly.
        processing_class (`ProcessorMixin`, *optional*): loaded with `AutoProcessor` when omitted.
        model_init (`Callable`, *optional*): as in `Trainer`, a function of no argument (or of the hyper-parameter
            trial) returning a new model, called at construction and at every `train()`. Each model goes through the
            same preparation as `model` (conversion with the processor as given, `peft_config`, frozen vision tower).
            Incompatible with `optimizers`; use `optimizer_cls_and_kwargs`.
        compute_loss_func (`Callable`, *optional*): replaces the text term: the loss is
            `ce_weight * compute_loss_func(outputs, labels, num_items_in_batch=n) + imagery_weight * imagery`, with
            `labels` unshifted (`-100` off the assistant tokens) and `n` the micro-batch's label tokens, so that a
            loss summed and divided by `n` is a per-micro-batch mean like the other term. Logged as `ce_loss`.
        compute_metrics, preprocess_logits_for_metrics (`Callable`, *optional*): as in `Trainer`; the predictions are
            the model's logits. With `compute_metrics`, `args.prediction_loss_only=None` (the default) becomes
            `False`.
        callbacks, optimizers, optimizer_cls_and_kwargs: as in `Trainer`.
        peft_config (`peft.PeftConfig`, *optional*): wrap the model with PEFT (e.g. LoRA) before training. A LoRA config
            that leaves `trainable_token_indices` unset also trains the latent start/end embedding rows
            ([`with_latent_token_rows`]).

    Example:

    ```python
    >>> from datasets import load_dataset
    >>> from thinker4d.trainers import DIFTTrainer
    >>> trainer = DIFTTrainer(model="Qwen/Qwen2.5-VL-3B-Instruct", train_dataset=load_dataset("...")["train"])  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    ```
    """

    _tag_names = ["thinker4d", "dift"]

    def __init__(
        self,
        model: str | PreTrainedModel | None = None,
        args: DIFTConfig | None = None,
        data_collator: Callable | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        model_init: Callable[..., PreTrainedModel] | None = None,
        compute_loss_func: Callable | None = None,
        compute_metrics: Callable | None = None,
        callbacks=None,
        optimizers=(None, None),
        optimizer_cls_and_kwargs=None,
        preprocess_logits_for_metrics: Callable | None = None,
        peft_config=None,
    ):
        if (model is None) == (model_init is None):
            raise ValueError("Pass either `model` or `model_init` to DIFTTrainer (one of them, as with Trainer).")
        if model_init is not None and optimizers != (None, None):
            raise ValueError(
                "`model_init` builds a new model at every train(), so an `optimizers` instance would hold the old "
                "one's parameters; pass `optimizer_cls_and_kwargs=(cls, kwargs)` instead."
            )
        if args is None:
            name = model if isinstance(model, str) else getattr(getattr(model, "config", None), "_name_or_path", "")
            args = DIFTConfig(output_dir=f"{(name or 'model').rstrip('/').split('/')[-1]}-DIFT")
        elif not isinstance(args, DIFTConfig):
            raise TypeError(f"args must be a DIFTConfig, got {type(args).__name__}; build one with DIFTConfig(...).")

        if args.prediction_loss_only is None:  # compute_metrics needs the predictions
            args.prediction_loss_only = compute_metrics is None
        if model_init is not None:
            set_seed(args.seed)  # as Trainer does before calling model_init
            model = _call_model_init(model_init, None)
            if processing_class is None:
                from transformers import AutoProcessor

                processing_class = AutoProcessor.from_pretrained(model.config._name_or_path)
            # from_base mean-initialises the latent rows only when it adds the tokens, so every later model is
            # converted with a copy of the processor as it was before.
            source_processor = copy.deepcopy(processing_class)
        model, processing_class = self._load_model(model, processing_class, args)
        model = self._with_peft_and_frozen_tower(model, args, peft_config)

        config = unwrap_latent_model(model).config
        self.latent_pad_id = config.latent_pad_id
        self.hidden_size = config.text_config.hidden_size
        if data_collator is None:
            data_collator = DIFTDataCollator(
                processing_class,
                latent_size=config.latent_size,
                mode=args.mode,
                default_fps=args.default_fps,
                max_frames=args.max_frames,
                frame_max_pixels=args.frame_max_pixels,
                imagery_max_pixels=args.imagery_max_pixels,
                skip_invalid_rows=args.skip_invalid_rows,
            )
        self.num_invalid_rows = 0
        train_dataset = self._prepare_dataset(train_dataset, model, processing_class, data_collator, args, "train")
        if isinstance(eval_dataset, dict):
            eval_dataset = {
                k: self._prepare_dataset(v, model, processing_class, data_collator, args, f"eval {k}")
                for k, v in eval_dataset.items()
            }
        else:
            eval_dataset = self._prepare_dataset(eval_dataset, model, processing_class, data_collator, args, "eval")

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_loss_func=compute_loss_func,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
        )
        if model_init is not None:
            # Set after super(): Trainer would call it once more at construction for a model built above already.
            def init_model(trial):
                fresh, _ = self._load_model(_call_model_init(model_init, trial), copy.deepcopy(source_processor), args)
                check_latent_tokens(self.processing_class.tokenizer, fresh.config)
                return self._with_peft_and_frozen_tower(fresh, args, peft_config)

            self.model_init = init_model
        # compute_loss returns per-micro-batch means; the Trainer divides by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    # ---------------------------------------------------------------- setup
    @staticmethod
    def _with_peft_and_frozen_tower(model, args: DIFTConfig, peft_config):
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, with_latent_token_rows(peft_config, model.config))
            if args.activation_checkpointing:
                model.enable_input_require_grads()
        freeze_vision_tower(model)
        return model

    @staticmethod
    def _load_model(model, processor, args: DIFTConfig):
        kwargs = dict(args.model_init_kwargs or {})
        if isinstance(kwargs.get("dtype"), str) and kwargs["dtype"] != "auto":
            kwargs["dtype"] = getattr(torch, kwargs["dtype"])
        if isinstance(model, str):
            if processor is None:
                from transformers import AutoProcessor

                processor = AutoProcessor.from_pretrained(model)
            fields = {"latent_size": args.latent_size, "imagery_pooling": args.imagery_pooling}
            fields = {k: v for k, v in fields.items() if v is not None}
            model, processor = from_base(model, processor, **fields, **kwargs)
        else:
            if kwargs:
                raise ValueError(
                    "model_init_kwargs only applies when model is a string; the model object is already built."
                )
            if processor is None:
                from transformers import AutoProcessor

                processor = AutoProcessor.from_pretrained(model.config._name_or_path)
            if not isinstance(model, THINKER4D_CLASSES):
                model, processor = from_base(
                    model,
                    processor,
                    latent_size=args.latent_size or 4,
                    imagery_pooling=args.imagery_pooling or "raster",
                )
        # K, the pooling mode and the latent norm live in the model config so they travel with the checkpoint.
        if args.latent_size is not None:
            model.config.latent_size = args.latent_size
        if args.imagery_pooling is not None:
            model.config.imagery_pooling = args.imagery_pooling
        if args.latent_norm == "embedding":
            weight = model.get_input_embeddings().weight
            if weight.numel() == 0:
                raise ValueError(
                    "latent_norm='embedding' cannot read the input embeddings (they are partitioned, e.g. by ZeRO-3); "
                    "pass the number instead (the mean L2 norm of the embedding rows)."
                )
            model.config.latent_norm = float(weight.detach().float().norm(dim=-1).mean())
        elif args.latent_norm is not None:
            model.config.latent_norm = float(args.latent_norm)
        check_latent_tokens(processor.tokenizer, model.config)
        return model, processor

    def _prepare_dataset(self, dataset, model, processor, collator, args: DIFTConfig, split: str):
        dataset, num_invalid = prepare_dift_dataset(dataset, model, processor, collator, args, split)
        self.num_invalid_rows += num_invalid
        return dataset

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # Overwritten -- Qwen-VL checkpoints are written in the legacy key layout (`visual.*`, `model.layers.*`); the
        # stock Trainer loads them with a raw load_state_dict that matches none of the keys and only warns, so a
        # resumed run silently restarts from the initial weights. Load through from_pretrained's key mapping instead.
        if load_thinker4d_checkpoint(self, resume_from_checkpoint, model):
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        # Overwritten -- also record the training arguments, the trainer state and the stages that led to these
        # weights as JSON (trainers/records.py), so a model card can say how the folder was made.
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            write_training_record(self, output_dir or self.args.output_dir, unwrap_latent_model(self.model))

    # ---------------------------------------------------------------- loss and logging
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Overwritten -- CE over the assistant tokens plus the cosine imagery term; both logged.
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        vision_tower(model).eval()  # the Trainer's model.train() would switch the frozen tower back
        has_imagery = "latent_embeds" in inputs or "imagery_pixel_values" in inputs
        if self.args.mode == "dift" and not has_imagery:
            # the latent path (positions exactly as in generate) even for a batch without imagery
            inputs["latent_embeds"] = torch.zeros(0, self.hidden_size, device=inputs["input_ids"].device)
        outputs = model(**inputs, output_last_hidden_state=has_imagery, use_cache=False)
        if self.compute_loss_func is not None:
            # the user's text loss replaces the CE term, normalised like it: over this micro-batch's label tokens
            ce = self.compute_loss_func(outputs, labels, num_items_in_batch=(labels[:, 1:] != -100).sum())
        else:
            ce = causal_ce(outputs.logits, labels)
        loss = self.args.ce_weight * ce
        metrics = {"ce_loss": ce.detach()}
        if has_imagery:
            img_loss, cos = imagery_loss(
                outputs.last_hidden_state, inputs["input_ids"], outputs.latent_embeds, self.latent_pad_id
            )
            loss = loss + self.args.imagery_weight * img_loss
            metrics.update(imagery_loss=img_loss.detach(), imagery_cos=cos)
        elif self.args.mode == "dift":
            # Every rank must gather the same metrics (each gather is a collective): a rank whose micro-batch has no
            # imagery sends NaN, which the mean skips; otherwise the ranks' collectives pair up wrongly and hang.
            nan = torch.full((), float("nan"), device=ce.device)
            metrics.update(imagery_loss=nan, imagery_cos=nan)
        for key, value in metrics.items():
            values = self.accelerator.gather_for_metrics(value.reshape(1)).float()
            values = values[~values.isnan()]
            if values.numel():
                self._metrics[mode][key].append(values.mean().item())
        if not return_outputs:
            return loss
        # Predictions for compute_metrics: the outputs without the fields whose shapes vary from batch to batch and
        # are not per row: the two DIFT asks for itself (`last_hidden_state` only with imagery; `latent_embeds` per
        # slot) and the vision encoders' outputs (per image / video patch).
        extra = ("last_hidden_state", "latent_embeds", "image_outputs", "video_outputs", "audio_outputs")
        return loss, type(outputs)(**{k: v for k, v in outputs.items() if k not in extra})

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Overwritten -- adds the averaged ce_loss / imagery_loss / imagery_cos since the last log (trl's SFTTrainer way)
        mode = "train" if self.model.training else "eval"
        metrics = {key: sum(val) / len(val) for key, val in self._metrics[mode].items() if val}
        if mode == "eval":
            metrics = {f"eval_{key}": val for key, val in metrics.items()}
        skipped = self.num_invalid_rows + getattr(self.data_collator, "num_skipped", 0)
        if skipped and mode == "train" and "loss" in logs:
            metrics["skipped_rows"] = skipped
        logs.update(metrics)
        super().log(logs, start_time)
        self._metrics[mode].clear()


def _call_model_init(model_init, trial):
    """`model_init()` or `model_init(trial)`, as `Trainer.call_model_init` calls it."""
    from transformers.trainer_utils import number_of_arguments

    model = model_init() if number_of_arguments(model_init) == 0 else model_init(trial)
    if model is None:
        raise RuntimeError("model_init returned None; it must return a model.")
    return model


__all__ = [
    "DIFTTrainer",
    "cache_imagery_targets",
    "causal_ce",
    "freeze_vision_tower",
    "imagery_loss",
    "vision_tower",
    "with_latent_token_rows",
]
