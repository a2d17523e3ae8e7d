"""The evaluation controls the paper does not run: blind frames, latent interventions and their calibration mean.

Paper: https://huggingface.co/papers/2605.05997

1. `blind`: every frame is replaced by a constant mid-grey frame of the same count and size ([`blind_frames`]), so the
   prompt is the same length and only the pixels differ; it measures what the text alone gives.
2. `latent_intervention`: the vectors a thinker4d model feeds back inside an imagery block are replaced (see
   `thinker4d.models.generation.latent_sample`) to measure whether the answers use them. [`check_controls`] refuses
   an intervention the model cannot run before any row is generated.
3. `"mean"` calibration: every run without intervention records the mean fed-back vector per slot
   ([`LatentSums`] per process in `parts/`, merged by [`write_latent_mean`] into `latent_mean.pt`);
   [`load_latent_mean`] reads it (or a tensor file) for another run's `"mean"` intervention.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import EvalConfig
from .run_folder import LATENT_MEAN, PARTS


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


def is_latent_model(model) -> bool:
    """Whether `model` is a thinker4d model, which feeds back latents (its config carries the latent token ids)."""
    return getattr(getattr(model, "config", None), "latent_start_id", None) is not None


class LatentSums:
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


def check_controls(model, config: EvalConfig):
    """Refuse controls the model cannot run (before any row, so that they do not turn into per-row generation errors)
    and load the calibration mean."""
    from ..errors import UserValueError

    if config.latent_intervention == "none":
        return None
    if not is_latent_model(model):
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


__all__ = ["LatentSums", "blind_frames", "check_controls", "is_latent_model", "load_latent_mean", "write_latent_mean"]
