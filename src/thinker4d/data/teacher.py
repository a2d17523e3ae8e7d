"""Stage 2, teachers: landmark selection and chain-of-thought writing behind one small interface
(https://huggingface.co/papers/2605.05997, §3.1 and Appendix A).

A teacher has three batched methods, `landmarks_many(clips)`, `labels_many(requests)` and `cot_many(requests)`, each
returning one result or one exception per input, plus `stats()`. `labels_many` labels plain videos (no geometry): one
class of `thinker4d.data.questions.TEACHER_LABEL_CLASSES[task]` (or `UNSURE`) per `{"clip", "task", "landmark"}`
request. Two implementations:

* `RuleTeacher` (offline): landmarks from the clip's geometry by the paper's Appendix A rules, CoT from a template. It
  cannot label plain videos: `labels_many` returns a `TeacherError("no_geometry", ...)` per request.
* `GeminiTeacher` (google-genai, in `thinker4d.data.gemini`; also importable from here): structured JSON output
  (`responseSchema`; labels through an enum of the classes, so an unknown class is a malformed response and is
  retried), async calls with bounded concurrency, its own retries with exponential backoff and jitter (429, 5xx,
  timeouts, malformed JSON), an on-disk response cache keyed by the request, token and cost accounting. The API key
  comes from `GEMINI_API_KEY` / `GOOGLE_API_KEY` and is never logged or written.

This module also holds what a model teacher is asked: the landmark request (`LANDMARK_PROMPT`, `LANDMARK_SCHEMA`) and
the label request (`label_prompt`, `label_schema`); the CoT request is in `thinker4d.data.cot`.

What differs from the paper (docs/paper_differences.md, section 10):

1. Landmarks on clips with geometry come from the geometry (static = its track never moves; dynamic = it moves), so
   a teacher cannot pick a "static" object that moves. The teacher is asked only for clips without object geometry.
2. One model, no rotation between five model names on retries, no private gateway header; reruns hit the cache.
3. The paper's Gemini labels object questions of every clip; here a teacher labels only plain videos, and only with one
   class of a fixed list per task (or declines); clips with geometry are labelled from the geometry.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from .cot import compact_cot, imagery_only_cot, templated_cot
from .questions import TEACHER_LABEL_CLASSES, UNSURE, teacher_classes
from .segmentation import mask_prompt


if TYPE_CHECKING:
    from .gemini import GeminiTeacher

logger = logging.getLogger(__name__)

STILL_M = 0.05  # a track that never leaves a 5 cm ball counts as static
MOVING_M = 0.3  # displacement (max distance from the start) for "clear, non-trivial motion"


class TeacherError(RuntimeError):
    """A teacher call failed for good; `reason` is a short code for the rejection statistics."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def is_transient_rejection(reason: str) -> bool:
    """Whether a rejection reason records a teacher failure that a later try may not meet: `teacher_timeout`,
    `teacher_transport` (e.g. the endpoint was unreachable), `teacher_http_429` and `teacher_http_5xx`. A resumed run
    redoes the clips with such rejections; other reasons (malformed answers, 4xx, validation, geometry) are final."""
    if not reason.startswith("teacher_"):
        return False
    reason = reason[len("teacher_") :]
    return reason in ("timeout", "transport", "http_429") or (reason.startswith("http_5") and reason[5:].isdigit())


# ------------------------------------------------------------------------------------------------ landmark rules


def _describe(clip, name: str) -> str:
    obj = next((o for o in clip.objects if o.get("name") == name), {})
    shape = obj.get("shape")
    return f"the {name}" + (f" ({shape})" if shape else "")


def geometry_landmarks(clip, min_present_frac: float = 0.5, min_area_frac: float = 0.001) -> dict:
    """Appendix A on exact geometry: `{"static": landmark | None, "dynamic": landmark | None}`.

    Static: never moves, present in most frames, salient and central (score = mean area x centrality). Dynamic:
    moves at least `MOVING_M`, present in at least `min_present_frac` of the frames, the most prominent (largest mean
    area) if several. A landmark is `{"name", "role", "description", "frame", "point", "box"}` (prompt in pixels).
    """
    out = {"static": None, "dynamic": None}
    if clip.instance_ids is None or not clip.object_names:
        return out
    T, H, W = clip.instance_ids.shape
    best = {"static": (-1.0, None), "dynamic": (-1.0, None)}
    for i, name in enumerate(clip.object_names):
        masks = clip.instance_ids == i + 1
        areas = masks.reshape(T, -1).mean(1)
        present = areas >= min_area_frac
        if present.sum() < max(2, np.ceil(min_present_frac * T)):
            continue
        if name in clip.tracks:
            tr = np.asarray(clip.tracks[name])
            disp = float(np.linalg.norm(tr - tr[0], axis=1).max())
        else:  # no track (e.g. SpatialVID's "dynamic" mask): trust the object's flag
            obj = next((o for o in clip.objects if o.get("name") == name), {})
            disp = MOVING_M if obj.get("moving") else 0.0
        mean_area = float(areas[present].mean())
        if disp <= STILL_M:
            ys, xs = np.nonzero(masks[present].any(0))
            centrality = 1.0 - np.hypot(xs.mean() / W - 0.5, ys.mean() / H - 0.5) / np.hypot(0.5, 0.5)
            role, score = "static", mean_area * centrality * present.mean()
        elif disp >= MOVING_M:
            role, score = "dynamic", mean_area
        else:
            continue
        if score > best[role][0]:
            best[role] = (score, name)
    for role, (_, name) in best.items():
        if name is not None:
            prompt = mask_prompt(clip.instance_ids == clip.object_names.index(name) + 1)
            out[role] = {"name": name, "role": role, "description": _describe(clip, name), **(prompt or {})}
    return out


def has_object_geometry(clip) -> bool:
    return clip.instance_ids is not None and bool(clip.object_names)


def _point_schema(n: int) -> dict:
    return {"type": "ARRAY", "items": {"type": "INTEGER"}, "minItems": n, "maxItems": n}


LANDMARK_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        role: {
            "type": "OBJECT",
            "properties": {
                "name": {"type": "STRING"},
                "description": {"type": "STRING"},
                "point": _point_schema(2),
                "box": _point_schema(4),
            },
            "required": ["name", "description", "point", "box"],
        }
        for role in ("static_object", "dynamic_object")
    },
    "required": ["static_object", "dynamic_object"],
}

LANDMARK_PROMPT = """Select two landmarks in this video (frames in time order) for reasoning about motion.
Static object: stationary for the whole video; visually salient with a reasonable area (not small or occluded);
present in most frames; prefer central objects, whose apparent displacement shows the camera motion best.
Dynamic object: clear, non-trivial motion; distinguishable from the background and other moving things; trackable in at
least 50% of the video; the most prominent one if there are several.
For each give a short distinctive name, a brief visual description, a point [x, y] inside the object and its box
[x1, y1, x2, y2] in the FIRST frame, on a 0-1000 grid with (0, 0) at the top-left."""


# ------------------------------------------------------------------------------------------------ labels (plain videos)


RULE_CANNOT_LABEL = "the rule teacher cannot label plain videos; use GeminiTeacher"
NO_TEACHER_CLASSES = f"a teacher labels plain videos only for {', '.join(TEACHER_LABEL_CLASSES)}"

_CAMERA_CLASS_HELP = (
    "Dolly In / Dolly Out (the camera moves forward / backward), Truck Left / Truck Right (moves sideways), "
    "Pedestal Up / Pedestal Down (moves up / down), Pan Left / Pan Right (turns left / right in place), "
    "Tilt Up / Tilt Down (turns up / down in place), Roll CW / Roll CCW (rotates about its viewing axis, clockwise / "
    "counter-clockwise), Stay (does not move)"
)
_LABEL_TASKS = {
    "camera_motion": (
        "How does the camera move over the whole video? Classes: " + _CAMERA_CLASS_HELP + ". If the camera clearly "
        "does two of these at once, changes its motion during the video, or you cannot tell, answer {unsure}."
    ),
    "object_direction": (
        "Seen from the camera's starting viewpoint, in which direction does this object move over the video? If it "
        "moves diagonally, does not move, or you cannot tell, answer {unsure}."
    ),
    "object_distance": (
        "Between the first and the last frame, does this object get closer to or farther from the camera (the "
        "camera's own motion included)? If you cannot tell, answer {unsure}."
    ),
    "object_speed": (
        "How fast does this object move while it is moving, in metres per second (judge the scale from the sizes of "
        "known objects)? If its speed is close to 1 m/s or you cannot tell, answer {unsure}."
    ),
}


def label_schema(task: str) -> dict:
    """The response schema of a label request: `{"evidence": str, "answer": one of the task's classes or UNSURE}`.

    Raises:
        ValueError: for a task without teacher classes.
    """
    classes = teacher_classes(task)
    return {
        "type": "OBJECT",
        "properties": {
            "evidence": {
                "type": "STRING",
                "description": "what in the frames shows the answer, in one or two sentences",
            },
            "answer": {"type": "STRING", "enum": [*classes, UNSURE]},
        },
        "required": ["evidence", "answer"],
    }


def label_prompt(task: str, times_s, landmark: dict | None = None, size: tuple | None = None) -> str:
    """The prompt of a label request. The images (video frames at `times_s` seconds) go before this text.

    Args:
        task (`str`): a `TEACHER_LABEL_CLASSES` key.
        times_s (`list[float]`): time of each image sent, in seconds.
        landmark (`dict`, *optional*): the object of an object task (`name`, `description`, `box` in pixels of frame
            `frame`), as the teacher chose it.
        size (`tuple[int, int]`, *optional*): `(height, width)` of the frames, to put the box on the 0-1000 grid.
    """
    times = ", ".join(f"{t:.2f}" for t in times_s)
    lines = [f"These {len(times_s)} images are frames of one video in time order, at {times} seconds."]
    if task != "camera_motion" and landmark:
        desc = str(landmark.get("description") or "").strip()
        obj = f"The object: {landmark['name']}" + (f" ({desc})" if desc else "")
        box, (H, W) = landmark.get("box"), size or (0, 0)
        if box is not None and H and W and int(landmark.get("frame", 0) or 0) == 0:
            x1, y1, x2, y2 = (round(v / d * 1000) for v, d in zip(box, (W, H, W, H)))
            obj += (
                f", inside the box [{x1}, {y1}, {x2}, {y2}] ([x1, y1, x2, y2]) in the first image, on a 0-1000 grid "
                "with (0, 0) at the top-left"
            )
        lines.append(obj + ".")
    lines.append("Question: " + _LABEL_TASKS[task].format(unsure=UNSURE))
    classes = "; ".join([*TEACHER_LABEL_CLASSES[task], UNSURE])
    lines.append(
        "Return JSON with 'evidence' (what in the frames shows it, one or two sentences) and 'answer' (exactly one "
        f"of: {classes})."
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ RuleTeacher


class RuleTeacher:
    """Offline teacher: geometry landmarks and templated CoT (deterministic, no network).

    Example:

    ```python
    >>> from thinker4d.world import render_clip
    >>> teacher = RuleTeacher()
    >>> lm = teacher.landmarks_many([render_clip(3, num_frames=8, size=64)])[0]
    >>> sorted(lm)
    ['dynamic', 'static']
    ```
    """

    name = "rule"
    model = "rule-template"

    STYLES = {"full": templated_cot, "compact": compact_cot, "imagery_only": imagery_only_cot}

    def __init__(self, style: str = "full"):
        if style not in self.STYLES:
            raise ValueError(f"RuleTeacher style must be one of {sorted(self.STYLES)}, got {style!r}.")
        self.style = style
        self._template = self.STYLES[style]

    def landmarks_many(self, clips) -> list:
        return [geometry_landmarks(c) for c in clips]

    def labels_many(self, requests) -> list:
        """A rule teacher has no judgment to label a video without geometry: one `TeacherError("no_geometry")` per
        request (recorded as the skip reason `"no_geometry: the rule teacher cannot label plain videos; use
        GeminiTeacher"`)."""
        return [TeacherError("no_geometry", RULE_CANNOT_LABEL) for _ in requests]

    def cot_many(self, requests) -> list:
        out = []
        for r in requests:
            try:
                out.append(self._template(r))
            except Exception as e:  # a template bug must not kill the run
                out.append(TeacherError("template_error", f"{type(e).__name__}: {e}"))
        return out

    def stats(self) -> dict:
        return {"teacher": self.name, "style": self.style}

    def close(self) -> None:
        pass


# `GeminiTeacher` lives in `thinker4d.data.gemini`, which builds on this module; it is imported from there on first use
# (PEP 562), so `from thinker4d.data.teacher import GeminiTeacher` works without an import cycle.
def __getattr__(name: str):
    if name == "GeminiTeacher":
        from .gemini import GeminiTeacher

        return GeminiTeacher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GeminiTeacher",
    "LANDMARK_SCHEMA",
    "NO_TEACHER_CLASSES",
    "RULE_CANNOT_LABEL",
    "RuleTeacher",
    "TeacherError",
    "geometry_landmarks",
    "label_prompt",
    "label_schema",
]
