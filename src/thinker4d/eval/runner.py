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
   fed-back imagery vectors (see `thinker4d.models.generation.latent_sample`) to measure whether the answers use them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .run_folder import LATENT_MEAN, PARTS, RUN, SUMMARY, atomic_write, check_run, load_done, write_results
from .tasks.base import Example, Task


logger = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """Settings of one evaluation run.

    > Parameters that control generation

    Args:
        batch_size (`int`, *optional*, defaults to 8): questions per `generate` call (per process).
        max_new_tokens (`int`, *optional*, defaults to 2048): completion budget.
        num_samples (`int`, *optional*, defaults to 1): samples per question; > 1 turns on sampling.
        seed (`int`, *optional*, defaults to 42): seed of the sampling runs.
        do_sample (`bool`, *optional*): force sampling (`True`) or greedy (`False`); default: greedy iff
            `num_samples == 1`.
        temperature (`float`, *optional*, defaults to 0.7), top_p (`float`, *optional*, defaults to 0.9): sampling
            settings (the paper's), unused when greedy.

    > Parameters that control the video frames

    Args:
        fps (`float`, *optional*, defaults to 1.0): frames per second sampled from each video (0 = all frames).
        max_frames (`int`, *optional*, defaults to 50): frame cap; longer videos are subsampled uniformly.
        max_pixels (`int`, *optional*, defaults to 200704): frames are downscaled to at most this many pixels when
            decoded (the paper's processor limit); 0 keeps the native size.
        cache_dir (`str`, *optional*): frame cache folder (default `~/.cache/thinker4d/frames`).

    > Parameters that control the controls (what the model is allowed to see)

    Args:
        blind (`bool`, *optional*, defaults to `False`): replace every frame with a constant mid-grey frame (value
            128) of the same count and size, so the prompt has the same tokens and length and only the pixels differ.
        latent_intervention (`str`, *optional*, defaults to `"none"`): `"zero"`, `"gaussian"`, `"shuffle"` or
            `"mean"` replaces every vector a thinker4d model feeds back inside an imagery block (the
            `latent_intervention` of `latent_sample`). `"shuffle"` takes the vector of another question of the same
            batch, so it needs `batch_size > 1`; `"gaussian"` noise is seeded from `seed` and the batch's first row.
        latent_mean (`str`, *optional*): for `"mean"`: a finished real run's folder (its `latent_mean.pt`, the mean
            fed-back vector per slot over the run's questions, written by every run without intervention) or a
            tensor file (`torch.save` of a `(hidden,)` or `(latent_size, hidden)` tensor).

    > Parameters that control the run

    Args:
        limit (`int`, *optional*): evaluate only the first `limit` questions.
        retry_errors (`bool`, *optional*, defaults to `False`): on resume, redo rows that failed with a
            `generation_error` (missing videos and bad rows are deterministic and are not retried).
    """

    batch_size: int = field(default=8, metadata={"help": "Questions per generate call."})
    max_new_tokens: int = field(default=2048, metadata={"help": "Completion budget."})
    num_samples: int = field(default=1, metadata={"help": "Samples per question (>1 samples)."})
    seed: int = field(default=42, metadata={"help": "Sampling seed."})
    do_sample: bool | None = field(default=None, metadata={"help": "Default: greedy iff num_samples == 1."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.9, metadata={"help": "Sampling top-p."})
    fps: float = field(default=1.0, metadata={"help": "Video frames per second."})
    max_frames: int = field(default=50, metadata={"help": "Frame cap per video."})
    max_pixels: int = field(default=200704, metadata={"help": "Decode-time pixel cap per frame (0 = none)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Frame cache folder."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N questions."})
    retry_errors: bool = field(default=False, metadata={"help": "Redo generation errors on resume."})
    blind: bool = field(default=False, metadata={"help": "Replace every frame with a constant mid-grey frame."})
    latent_intervention: str = field(
        default="none", metadata={"help": "Replace fed-back latents: none, zero, gaussian, shuffle or mean."}
    )
    latent_mean: str | None = field(
        default=None, metadata={"help": "For latent_intervention='mean': a real run folder or a tensor file."}
    )

    def __post_init__(self):
        from ..models.generation import LATENT_INTERVENTIONS

        if self.latent_intervention not in LATENT_INTERVENTIONS:
            raise ValueError(
                f"latent_intervention must be one of {', '.join(LATENT_INTERVENTIONS)}, got "
                f"{self.latent_intervention!r}."
            )
        if (self.latent_intervention == "mean") != (self.latent_mean is not None):
            raise ValueError(
                "latent_intervention='mean' needs latent_mean (a finished real run's folder holding latent_mean.pt, "
                "or a tensor file), and latent_mean is used only with it; got "
                f"latent_intervention={self.latent_intervention!r}, latent_mean={self.latent_mean!r}."
            )
        if self.latent_intervention == "shuffle" and self.batch_size < 2:
            raise ValueError(
                "latent_intervention='shuffle' takes vectors from other questions of a batch: batch_size >= 2."
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}.")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if self.fps < 0 or self.max_frames < 1:
            raise ValueError(
                f"fps must be >= 0 and max_frames >= 1, got fps={self.fps}, max_frames={self.max_frames}."
            )
        if self.num_samples > 1 and self.do_sample is False:
            raise ValueError("num_samples > 1 with do_sample=False would repeat the same greedy answer; drop one.")

    @property
    def sampling(self) -> bool:
        return self.num_samples > 1 if self.do_sample is None else bool(self.do_sample)

    def generation(self) -> dict:
        """The settings that change the answers (stored in run.json and the summary)."""
        out = {
            "do_sample": self.sampling,
            "max_new_tokens": self.max_new_tokens,
            "num_samples": self.num_samples,
            "fps": self.fps,
            "max_frames": self.max_frames,
            "max_pixels": self.max_pixels,
        }
        if self.sampling:
            out.update(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        # the controls are stored only when on, so runs without them keep the settings they always had
        if self.blind:
            out["blind"] = True
        if self.latent_intervention != "none":
            out["latent_intervention"] = self.latent_intervention
        if self.latent_intervention in ("shuffle", "gaussian"):  # the batch decides the donors / the noise draws
            out.update(batch_size=self.batch_size, seed=self.seed)
        if self.latent_mean is not None:
            out["latent_mean"] = str(self.latent_mean)
        return out

    def controls(self) -> dict:
        """The controls of the run, recorded in every summary: `blind`, `latent_intervention`, `latent_mean`."""
        return {"blind": self.blind, "latent_intervention": self.latent_intervention, "latent_mean": self.latent_mean}


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


def blind_frames(frames):
    """Constant mid-grey frames (value 128) with the shape and dtype of `frames` (`(T, H, W, 3)` uint8): the same
    number of video tokens, so the same prompt, with no visual content."""
    import numpy as np

    return np.full_like(frames, 128)


def load_latent_mean(path: str | os.PathLike):
    """The calibration mean of `latent_intervention="mean"`: `<path>/latent_mean.pt` of a finished run folder, or a
    tensor file. Loaded with `weights_only=True` (no pickled code runs)."""
    import torch

    from ..errors import UserFileNotFoundError, UserValueError

    path = Path(path)
    file = path / LATENT_MEAN if path.is_dir() else path
    if not file.is_file():
        raise UserFileNotFoundError(
            f"{file} not found: --latent-mean takes a finished run folder of the same model without intervention "
            f"(it holds {LATENT_MEAN} when the model fed back latents) or a tensor file."
        )
    mean = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(mean, torch.Tensor) or mean.dim() not in (1, 2):
        raise UserValueError(f"{file} must hold one tensor of shape (hidden,) or (latent_size, hidden).")
    return mean


def _latent_model(model) -> bool:
    return getattr(getattr(model, "config", None), "latent_start_id", None) is not None


class _LatentSums:
    """Running per-slot sum and count of the vectors a run fed back (the calibration of `latent_intervention="mean"`),
    saved per process in `parts/`, keyed by `(index, sample)` so that a resumed run does not count a row twice."""

    def __init__(self, file: Path):
        import torch

        self.file = file
        self.state = (
            torch.load(file, weights_only=True) if file.is_file() else {"sum": None, "count": None, "keys": []}
        )
        self.keys = {tuple(k) for k in self.state["keys"]}

    def add(self, rows: list[tuple[tuple[int, int], object]], latent_size: int) -> None:
        from ..models.generation import latent_sums

        rows = [(key, v) for key, v in rows if key not in self.keys and v is not None and v.shape[0]]
        if not rows:
            return
        total, count = latent_sums([v for _, v in rows], latent_size)
        if self.state["sum"] is not None:
            total, count = total + self.state["sum"], count + self.state["count"]
        self.keys |= {key for key, _ in rows}
        self.state = {"sum": total, "count": count, "keys": sorted(self.keys)}
        _save_tensor(self.state, self.file)


def _save_tensor(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_latent_mean(out: Path):
    """Merge every process's `parts/latent_sums_rank<k>.pt` into `latent_mean.pt` (`(latent_size, hidden)`, fp32);
    returns its name, or `None` when the run fed back no latents."""
    import torch

    total = count = None
    for f in sorted((out / PARTS).glob("latent_sums_rank*.pt")):
        state = torch.load(f, weights_only=True)
        if state["sum"] is None:
            continue
        total = state["sum"] if total is None else total + state["sum"]
        count = state["count"] if count is None else count + state["count"]
    if total is None:
        return None
    _save_tensor(total / count[:, None], out / LATENT_MEAN)
    return LATENT_MEAN


class _FrameLoader:
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
    import torch

    from ..prompting import video_kwargs

    texts = [
        processor.apply_chat_template(task.messages(ex), add_generation_prompt=True, tokenize=False) for ex, _ in batch
    ]
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
        first = batch[0]
        torch.manual_seed(config.seed * 1_000_003 + first[0].index * 101 + first[1])
    latent = _latent_model(model)
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


def _record(
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
    mean = _check_controls(model, config)
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
    frames = _FrameLoader(config)
    part = out / PARTS / f"rank{state.process_index}.jsonl"
    # a run without intervention records the mean fed-back vector: the calibration of another run's "mean" control
    sums = None
    if _latent_model(model) and config.latent_intervention == "none":
        sums = _LatentSums(out / PARTS / f"latent_sums_rank{state.process_index}.pt")
    start = time.perf_counter()
    with open(part, "a", encoding="utf-8") as sink:

        def write(rec: dict) -> None:
            sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()

        pending = []
        for ex, s in mine:
            if ex.error:
                write(_record(ex, s, None, ex.error, task))
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
                    write(_record(ex, s, None, str(e) if reason else f"unreadable_video: {e}", task))
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


def _check_controls(model, config: EvalConfig):
    """Refuse controls the model cannot run (before any row, so that they do not turn into per-row generation errors)
    and load the calibration mean."""
    from ..errors import UserValueError

    if config.latent_intervention == "none":
        return None
    if not _latent_model(model):
        raise UserValueError(
            f"latent_intervention={config.latent_intervention!r} needs a thinker4d model (its config carries the "
            f"latent token ids); {type(model).__name__} feeds back no latents. Evaluate it without the intervention."
        )
    from ..models.generation import check_intervention_args

    mean = load_latent_mean(config.latent_mean) if config.latent_mean is not None else None
    hidden = model.config.get_text_config().hidden_size
    if mean is not None and mean.shape[-1] != hidden:
        raise UserValueError(
            f"The latent mean from {config.latent_mean} has size {mean.shape[-1]}, the model's hidden size is {hidden}: "
            "calibrate on a run of the same model."
        )
    try:
        check_intervention_args(config.latent_intervention, mean, model.config.latent_size)
    except ValueError as e:
        raise UserValueError(f"{e} (latent mean from {config.latent_mean})") from e
    return mean


def _run_batch(model, processor, task, batch, videos, config, mean=None) -> list[tuple[dict, dict | None]]:
    """Generates a batch, returning `(record, latent info)` per row; when the batch fails, retries row by row so one
    bad row cannot sink its neighbours."""
    if not batch:
        return []
    try:
        raws, infos = _generate(model, processor, task, batch, videos, config, mean)
        return [(_record(ex, s, raw, None, task, i), i) for (ex, s), raw, i in zip(batch, raws, infos)]
    except Exception as e:
        if len(batch) == 1:
            logger.warning("Generation failed for row %d: %s", batch[0][0].index, e)
            error = f"generation_error: {type(e).__name__}: {e}"
            return [(_record(batch[0][0], batch[0][1], None, error, task), None)]
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


__all__ = ["EvalConfig", "blind_frames", "evaluate_model", "load_latent_mean", "run_evaluation", "shard"]
