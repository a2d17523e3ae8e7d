"""The evaluation runner: batched generation with left padding, resumable per-row results, sharding over processes.

Paper: https://huggingface.co/papers/2605.05997

What differs from the paper's `evaluation/dsr_eval.py` (docs/paper_differences.md, section 9):

1. Greedy decoding by default; `num_samples > 1` samples each question `n` times (temperature / top-p) with a seed
   and reports the mean and standard error, instead of one stochastic sample at T = 0.7.
2. Batched: prompts are left-padded and sent through `model.generate(**inputs)` together. The same code evaluates a
   stock transformers VLM (baselines) and a thinker4d model, whose `generate()` runs latent decoding.
3. Resumable: each finished (question, sample) is appended and flushed to `parts/rank<k>.jsonl`; a rerun with the
   same settings skips finished rows. `results.jsonl` and `summary.json` are written only at the end, atomically,
   after checking that every row is present, so a partial run is never mistaken for a complete one.
4. No silent skips: missing / unreadable videos, bad rows and generation errors are recorded per row with a reason
   and counted wrong.
5. Multi-process (`accelerate launch`): every process takes the contiguous shard `split_between_processes` would
   give it (of all rows, so that the split does not depend on what is finished), skips its finished rows, and the
   main process merges the shards.
6. Controls the paper does not run: `blind` (every frame replaced by a constant mid-grey frame of the same count and
   size, so the prompt is the same length) measures what the text alone gives, and `latent_intervention` replaces the
   fed-back imagery vectors (see `thinker4d.models.generation.latent_sample`) to measure whether the answers use them
   (`thinker4d.eval.controls`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from .config import EvalConfig
from .controls import LatentSums, blind_frames, check_controls, is_latent_model, load_latent_mean, write_latent_mean
from .run_folder import PARTS, RUN, SUMMARY, atomic_write, check_run, load_done, write_results
from .tasks.base import Example, Task


logger = logging.getLogger(__name__)


class _SingleProcess:
    """The `PartialState` interface for one process (used when accelerate is not launched)."""

    process_index, num_processes, is_main_process = 0, 1, True

    def wait_for_everyone(self):
        pass


def shard(items: list, process_index: int, num_processes: int) -> list:
    """The contiguous slice `split_between_processes` gives process `process_index` (first ones get one extra)."""
    per, extra = divmod(len(items), num_processes)
    start = process_index * per + min(process_index, extra)
    return items[start : start + per + (1 if process_index < extra else 0)]


def _decode(processor, sequences, prompt_len: int, eos_ids: set[int], pad_id: int | None) -> list[str]:
    texts = []
    for seq in sequences[:, prompt_len:].tolist():
        ids = []
        for t in seq:
            if t in eos_ids:
                break
            if t != pad_id:
                ids.append(t)
        texts.append(processor.tokenizer.decode(ids, skip_special_tokens=False))
    return texts


class FrameLoader:
    """Decodes (or fetches) each example's frames once per process; keeps the last few in memory."""

    def __init__(self, config: EvalConfig):
        self.config, self.memo = config, {}

    def __call__(self, ex: Example):
        from ..video import VideoError, cap_frames, decode_video

        if ex.index in self.memo:
            return self.memo[ex.index]
        c = self.config
        if ex.video is not None:
            frames, fps, _ = decode_video(ex.video, c.fps, c.max_frames, c.max_pixels or None, c.cache_dir)
        elif ex.frames is not None:
            try:
                frames, fps = ex.frames()
            except VideoError:
                raise
            except Exception as e:
                raise VideoError("unreadable_video", f"{type(e).__name__}: {e}") from e
            frames, fps, _ = cap_frames(frames, fps, c.max_frames)
        else:
            raise VideoError("missing_video", f"row {ex.index} has neither a video path nor frames.")
        if c.blind:
            frames = blind_frames(frames)
        if len(self.memo) > 16:
            self.memo.pop(next(iter(self.memo)))
        self.memo[ex.index] = (frames, fps)
        return frames, fps


def _generate(model, processor, task: Task, batch: list[tuple[Example, int]], videos, config: EvalConfig, mean=None):
    """Completions of a batch, and per row what the latent decoder reports: `(texts, infos)`, each info `None` for a
    model that feeds back no latents, else `{"latent_slots", "intervened_slots", "latents"}`."""
    first = batch[0]
    seed = config.seed * 1_000_003 + first[0].index * 101 + first[1]
    return generate_batch(model, processor, [task.messages(ex) for ex, _ in batch], videos, config, seed, mean)


def generate_batch(model, processor, messages: list[list[dict]], videos, config: EvalConfig, seed: int = 0, mean=None):
    """Generates one completion per chat in `messages` (each with one `{"type": "video"}` entry, filled from `videos`,
    a list of `(frames THWC uint8, fps)`), left-padded in one `generate` call with the settings of `config`.

    `seed` seeds sampling and the `"gaussian"` intervention. Returns `(texts, infos)` as the runner records them.
    The lmms-eval model (`thinker4d.lmms`) generates through this function too, so both harnesses decode alike.
    """
    import torch

    from ..prompting import video_kwargs

    texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages]
    inputs = processor(
        text=texts,
        padding=True,
        return_tensors="pt",
        **video_kwargs(processor, [v for v, _ in videos], [f for _, f in videos]),
    )
    inputs = inputs.to(model.device)
    tok = processor.tokenizer
    gen = model.generation_config
    eos = gen.eos_token_id if gen.eos_token_id is not None else tok.eos_token_id
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos_ids), None)
    kwargs = {"max_new_tokens": config.max_new_tokens, "do_sample": config.sampling, "pad_token_id": pad_id}
    if config.sampling:
        kwargs.update(temperature=config.temperature, top_p=config.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if config.sampling or config.latent_intervention == "gaussian":
        torch.manual_seed(seed)
    latent = is_latent_model(model)
    if latent:
        kwargs["return_dict_in_generate"] = True
        if config.latent_intervention != "none":
            kwargs.update(latent_intervention=config.latent_intervention, latent_mean=mean)
    with torch.inference_mode():
        out = model.generate(**inputs, **kwargs)
    sequences = out.sequences if hasattr(out, "sequences") else out
    texts = _decode(processor, sequences, inputs["input_ids"].shape[1], eos_ids, pad_id)
    if not latent or getattr(out, "latents", None) is None:
        return texts, [None] * len(texts)
    infos = [
        {"latent_slots": int(v.shape[0]), "intervened_slots": int(n), "latents": v.cpu()}
        for v, n in zip(out.latents, out.intervened_slots.tolist())
    ]
    return texts, infos


def result_record(
    ex: Example, sample: int, raw: str | None, error: str | None, task: Task, info: dict | None = None
) -> dict:
    """One result row in the design-doc layout (`index, id, task, gt, pred, raw, hit, error`) plus `sample`, the
    lenient prediction, and the latent slots fed and replaced (`null` for a model that feeds back no latents)."""
    if error:
        scored = {"pred": None, "hit": 0, "pred_lenient": None, "hit_lenient": 0}
    else:
        scored = task.score(ex, raw)
    return {
        "index": ex.index,
        "sample": sample,
        "id": ex.id,
        "task": ex.task,
        "gt": ex.answer or None,
        "pred": scored["pred"],
        "raw": raw,
        "hit": scored["hit"],
        "pred_lenient": scored["pred_lenient"],
        "hit_lenient": scored["hit_lenient"],
        "error": error,
        "latent_slots": info["latent_slots"] if info else None,
        "intervened_slots": info["intervened_slots"] if info else None,
    }


def evaluate_model(
    model,
    processor,
    task: Task,
    examples: list[Example],
    output_dir: str | os.PathLike,
    config: EvalConfig | None = None,
    model_name: str | None = None,
    data: str | None = None,
    state=None,
) -> dict | None:
    """Evaluates `model` on `examples`, writing `<output_dir>/results.jsonl` and `summary.json`.

    Args:
        model: any transformers VLM with `generate(**processor_outputs)` (a thinker4d model decodes latents there).
        processor: its processor; its tokenizer is switched to left padding.
        task (`Task`), examples (`list[Example]`): from `thinker4d.eval.load_task(name).load(data)`.
        output_dir (`str`): results folder; rerunning on it resumes.
        config (`EvalConfig`, *optional*): generation / frame / run settings.
        model_name (`str`, *optional*), data (`str`, *optional*): recorded in run.json and the summary.
        state (*optional*): an `accelerate.PartialState` (or anything with `process_index`, `num_processes`,
            `is_main_process`, `wait_for_everyone()`); default: one process.

    Returns:
        The summary `dict` on the main process, `None` on the others.
    """
    from tqdm.auto import tqdm

    from .. import __version__

    config = config or EvalConfig()
    state = state or _SingleProcess()
    out = Path(output_dir)
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    model_name = model_name or getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
    run = {"benchmark": task.name, "data": str(data) if data else None, "model": str(model_name)}
    run |= {"generation": config.generation(), "limit": config.limit, "questions": len(examples)}
    check_run(out, run)
    mean = check_controls(model, config)
    if (out / SUMMARY).is_file():
        logger.info("%s is already complete; delete it to re-evaluate.", out)
        return json.loads((out / SUMMARY).read_text()) if state.is_main_process else None
    done = load_done(out, config.retry_errors)
    state.wait_for_everyone()
    if state.is_main_process:
        atomic_write(out / RUN, json.dumps(run, indent=2))
    # Shard over *all* rows, then drop the finished ones: the split never depends on when a process read the files.
    units = [(ex, s) for ex in examples for s in range(config.num_samples)]
    if hasattr(state, "split_between_processes"):
        with state.split_between_processes(units) as part:
            mine = list(part)
    else:
        mine = shard(units, state.process_index, state.num_processes)
    mine = [(ex, s) for ex, s in mine if (ex.index, s) not in done]
    logger.info("%d of %d rows done; %d to go on this process.", len(done), len(units), len(mine))

    processor.tokenizer.padding_side = "left"
    frames = FrameLoader(config)
    part = out / PARTS / f"rank{state.process_index}.jsonl"
    # a run without intervention records the mean fed-back vector: the calibration of another run's "mean" control
    sums = None
    if is_latent_model(model) and config.latent_intervention == "none":
        sums = LatentSums(out / PARTS / f"latent_sums_rank{state.process_index}.pt")
    start = time.perf_counter()
    with open(part, "a", encoding="utf-8") as sink:

        def write(rec: dict) -> None:
            sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()

        pending = []
        for ex, s in mine:
            if ex.error:
                write(result_record(ex, s, None, ex.error, task))
            else:
                pending.append((ex, s))
        bar = tqdm(total=len(pending), desc=f"eval {task.name}", disable=not state.is_main_process)
        for b in range(0, len(pending), config.batch_size):
            batch, videos = [], []
            for ex, s in pending[b : b + config.batch_size]:
                try:
                    videos.append(frames(ex))
                    batch.append((ex, s))
                except Exception as e:  # VideoError carries its reason; anything else is an unreadable video
                    reason = getattr(e, "reason", None)
                    write(result_record(ex, s, None, str(e) if reason else f"unreadable_video: {e}", task))
            results = _run_batch(model, processor, task, batch, videos, config, mean)
            if sums is not None:  # before the rows, so that a crash in between cannot leave a row uncounted
                sums.add(
                    [((r["index"], r["sample"]), i and i["latents"]) for r, i in results], model.config.latent_size
                )
            for rec, _ in results:
                write(rec)
            bar.update(len(pending[b : b + config.batch_size]))
        bar.close()
    elapsed = time.perf_counter() - start
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    controls = {**config.controls(), "latent_mean_file": write_latent_mean(out) if sums is not None else None}
    return write_results(out, task, examples, config, run, elapsed, __version__, controls)


def _run_batch(model, processor, task, batch, videos, config, mean=None) -> list[tuple[dict, dict | None]]:
    """Generates a batch, returning `(record, latent info)` per row; when the batch fails, retries row by row so one
    bad row cannot sink its neighbours."""
    if not batch:
        return []
    try:
        raws, infos = _generate(model, processor, task, batch, videos, config, mean)
        return [(result_record(ex, s, raw, None, task, i), i) for (ex, s), raw, i in zip(batch, raws, infos)]
    except Exception as e:
        if len(batch) == 1:
            logger.warning("Generation failed for row %d: %s", batch[0][0].index, e)
            error = f"generation_error: {type(e).__name__}: {e}"
            return [(result_record(batch[0][0], batch[0][1], None, error, task), None)]
        out = []
        for item, video in zip(batch, videos):
            out.extend(_run_batch(model, processor, task, [item], [video], config, mean))
        return out


def run_evaluation(
    model: str,
    benchmark: str,
    data: str,
    output_dir: str | os.PathLike,
    config: EvalConfig | None = None,
    video_root: str | None = None,
    split: str = "test",
    dtype: str = "auto",
    use_accelerate: bool = True,
) -> dict | None:
    """Loads a checkpoint (path or Hub id) and a benchmark, then runs [`evaluate_model`] on every process.

    `import thinker4d.models` registers the thinker4d auto classes, so `AutoModelForImageTextToText` loads both thinker4d and
    stock checkpoints (the latter evaluate as baselines).
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import thinker4d.models  # noqa: F401  (registers the thinker4d auto classes)

    from .tasks import load_task

    config = config or EvalConfig()
    state = _SingleProcess()
    if use_accelerate:
        import torch
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        # Without a GPU, the processes `accelerate launch` starts form a (gloo) group only when asked for the CPU;
        # otherwise each one takes itself for the only process and evaluates every row.
        cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()
        state = PartialState(cpu=cpu)
    task = load_task(benchmark)
    examples = task.load(data, limit=config.limit, video_root=video_root, split=split)
    processor = AutoProcessor.from_pretrained(model)
    net = AutoModelForImageTextToText.from_pretrained(model, dtype=dtype)
    device = getattr(state, "device", None)
    if device is not None:
        net = net.to(device)
    net.eval()
    return evaluate_model(net, processor, task, examples, output_dir, config, model_name=model, data=data, state=state)


__all__ = [
    "EvalConfig",
    "blind_frames",
    "evaluate_model",
    "FrameLoader",
    "generate_batch",
    "load_latent_mean",
    "result_record",
    "run_evaluation",
    "shard",
]
