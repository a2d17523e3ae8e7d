"""The lmms-eval model `thinker4d`: a thinker4d checkpoint (or a stock Qwen2.5-VL / Qwen3-VL one, as a baseline)
answering with latent decoding, through the generation code of `thinker4d eval`.

    lmms-eval --model thinker4d --model_args pretrained=out/dift --tasks thinker4d_dsr_bench \
        --include_path "$(python -m thinker4d.lmms)" --batch_size 8

`generate_until` batches the requests (left padding) and calls `thinker4d.eval.runner.generate_batch`, the function
`thinker4d eval` generates with: the same chat template, video keyword arguments and greedy settings, so the same
checkpoint gives the same completions in both harnesses. The completion is returned as `thinker4d eval` records it,
special tokens included (imagery blocks show as `<|latent_start|>...<|latent_end|>`).

`loglikelihood` is refused: a thinker4d model answers by decoding, opening imagery blocks as it goes; the likelihood
of a fixed continuation is a teacher-forced pass in which no imagery is ever formed, so it would score a different
model from the one `generate_until` evaluates.

Paper: https://huggingface.co/papers/2605.05997
"""

from __future__ import annotations

import dataclasses
import os

from lmms_eval.api.model import lmms

from ..errors import UserValueError
from ..eval.config import EvalConfig
from ..eval.controls import check_controls
from ..eval.runner import generate_batch
from .task import Video


VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _until_cut(text: str, until) -> str:
    for stop in [until] if isinstance(until, str) else list(until or []):
        if stop:
            text = text.split(stop, 1)[0]
    return text


class Thinker4DLMM(lmms):
    """The lmms-eval model `thinker4d` (registered by the `lmms_eval.models` entry point `thinker4d.lmms:manifests`).

    Args (`--model_args key=value,...`):
        pretrained (`str`): checkpoint folder or Hub id (thinker4d or stock transformers VLM).
        batch_size (`int`, *optional*, defaults to 1): requests per `generate` call (lmms-eval's `--batch_size`).
        dtype (`str`, *optional*, defaults to `"auto"`), device (`str`, *optional*): where and how to load it.
        max_new_tokens (`int`, *optional*, defaults to 2048): used when a task's `generation_kwargs` set none.
        fps (`float`), max_frames (`int`), max_pixels (`int`): how a task's video *paths* are decoded (defaults
            those of `thinker4d eval`); the thinker4d tasks hand over frames already sampled.
        latent_intervention (`str`, *optional*, defaults to `"none"`), latent_mean (`str`, *optional*), seed (`int`):
            the latent controls of `thinker4d eval` (`EvalConfig`).
    """

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        batch_size: int | str | None = 1,
        dtype: str = "auto",
        device: str | None = None,
        max_new_tokens: int = 2048,
        fps: float = 1.0,
        max_frames: int = 50,
        max_pixels: int = 200704,
        latent_intervention: str = "none",
        latent_mean: str | None = None,
        seed: int = 42,
        max_batch_size: int | None = None,
        **unknown,
    ) -> None:
        super().__init__()
        if unknown:
            raise UserValueError(
                f"--model_args for thinker4d got unknown keys {sorted(unknown)}; it takes pretrained, batch_size, dtype, "
                "device, max_new_tokens, fps, max_frames, max_pixels, latent_intervention, latent_mean, seed."
            )
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserValueError(
                "The lmms-eval model thinker4d runs in one process; launch lmms-eval without accelerate/torchrun "
                "(or shard with `thinker4d eval`, which runs on several processes)."
            )
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        import thinker4d.models  # noqa: F401  (registers the thinker4d auto classes)

        self.processor = AutoProcessor.from_pretrained(pretrained)
        self.processor.tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(pretrained, dtype=dtype)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = self.model.to(device).eval()
        self.pretrained = pretrained
        self.batch_size = int(batch_size) if batch_size not in (None, "auto") else 1
        self.config = EvalConfig(
            batch_size=self.batch_size,
            max_new_tokens=int(max_new_tokens),
            fps=float(fps),
            max_frames=int(max_frames),
            max_pixels=int(max_pixels),
            latent_intervention=latent_intervention,
            latent_mean=latent_mean,
            seed=int(seed),
        )
        self.latent_mean = check_controls(self.model, self.config)

    def _settings(self, gen_kwargs: dict) -> EvalConfig:
        """`EvalConfig` of one request's `generation_kwargs` (greedy unless `do_sample`)."""
        gen_kwargs = dict(gen_kwargs or {})
        if int(gen_kwargs.get("num_beams", 1) or 1) != 1:
            raise UserValueError("thinker4d decodes greedily or by sampling; num_beams > 1 is not supported.")
        sampling = bool(gen_kwargs.get("do_sample", False))
        settings = {"max_new_tokens": int(gen_kwargs.get("max_new_tokens") or self.config.max_new_tokens)}
        settings["do_sample"] = sampling
        if sampling:
            settings["temperature"] = float(gen_kwargs.get("temperature", self.config.temperature))
            settings["top_p"] = float(gen_kwargs.get("top_p", self.config.top_p))
        return dataclasses.replace(self.config, **settings)

    def _video(self, visual, task: str) -> tuple:
        """`(frames, fps)` of one visual: a thinker4d [`Video`] or a video path (decoded as `thinker4d eval` does)."""
        if isinstance(visual, Video):
            return visual.frames, visual.fps
        if isinstance(visual, (str, os.PathLike)) and str(visual).lower().endswith(VIDEO_SUFFIXES):
            from ..video import decode_video

            c = self.config
            frames, fps, _ = decode_video(str(visual), c.fps, c.max_frames, c.max_pixels or None, c.cache_dir)
            return frames, fps
        raise UserValueError(
            f"Task {task} gave the thinker4d model a {type(visual).__name__} ({str(visual)[:80]!r}); it answers about "
            "one video per question: a thinker4d task's frames or a video file path."
        )

    def generate_until(self, requests) -> list[str]:
        from tqdm.auto import tqdm

        out: list[str | None] = [None] * len(requests)
        todo = []
        for i, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            todo.append((i, context, gen_kwargs, doc_to_visual, doc_id, task, split))
        bar = tqdm(total=len(todo), desc="thinker4d generate", disable=self.rank != 0)
        while todo:
            # one batch: up to batch_size askable requests in a row with the same generation settings
            gen_kwargs = todo[0][2] or {}
            config = self._settings(gen_kwargs)
            messages, videos, rows = [], [], []
            while todo and len(rows) < self.batch_size and (todo[0][2] or {}) == gen_kwargs:
                i, context, _, doc_to_visual, doc_id, task, split = todo.pop(0)
                visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
                if any(isinstance(v, Video) and v.error for v in visuals):
                    out[i] = ""  # a row that cannot be asked: nothing is generated, the task records why
                    bar.update(1)
                    continue
                if len(visuals) != 1:
                    raise UserValueError(
                        f"Task {task} doc {doc_id} gave {len(visuals)} visuals; the thinker4d model answers about "
                        "exactly one video per question."
                    )
                videos.append(self._video(visuals[0], task))
                content = [{"type": "video"}, {"type": "text", "text": context}]
                messages.append([{"role": "user", "content": content}])
                rows.append((i, doc_id))
            if rows:
                seed = config.seed * 1_000_003 + int(rows[0][1]) * 101
                texts, _ = generate_batch(self.model, self.processor, messages, videos, config, seed, self.latent_mean)
                for (i, _), text in zip(rows, texts):
                    out[i] = _until_cut(text, gen_kwargs.get("until"))
                bar.update(len(rows))
        bar.close()
        return out

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        tasks = sorted({str(r.task_name) for r in requests})
        raise NotImplementedError(
            "The thinker4d lmms-eval model does not compute loglikelihood: a thinker4d model answers by decoding and "
            "opens latent imagery blocks as it goes, while the likelihood of a fixed continuation is a teacher-forced "
            "pass in which no imagery is formed, so it would score another model than the one evaluated. "
            f"These tasks need it (output_type loglikelihood or multiple_choice): {', '.join(tasks)}. "
            "Run their generate_until variants, or the thinker4d tasks (thinker4d_dsr_bench, thinker4d_dyn_bench, "
            "thinker4d_vlm4d, thinker4d_synthdsr)."
        )

    def generate_until_multi_round(self, requests) -> list[str]:
        tasks = sorted({str(r.task_name) for r in requests})
        raise NotImplementedError(
            f"The thinker4d lmms-eval model answers one question per request; multi-round tasks ({', '.join(tasks)}) "
            "are not supported."
        )


__all__ = ["Thinker4DLMM"]
