"""The settings of an evaluation run ([`EvalConfig`]): generation, video frames, the controls, resume.

Paper: https://huggingface.co/papers/2605.05997

What differs from the paper's `evaluation/dsr_eval.py` is listed in `thinker4d.eval.runner`; the settings here are the
ones that change the answers (`EvalConfig.generation()`, stored in run.json and checked on resume) and the controls.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


__all__ = ["EvalConfig"]
