"""Stage 6, chain of thought: the request a teacher answers, the templated CoT and the teacher prompt
(https://huggingface.co/papers/2605.05997, §3.1 "Imagery-based CoT synthesis", Appendix B Figs. 10-11).

What differs from the paper (docs/paper_differences.md, sections 8 and 10):

1. The format is `<think>...<imagery>...</think><answer>B. Pan Right</answer>` with exactly one `<imagery>` per
   overlay (the paper writes `<output_image>` and converts later); the answer line is the rendered option from
   `thinker4d.prompting`, so training, RL and evaluation see the same answer format.
2. The templated CoT (`RuleTeacher`) states the evidence from geometry in words: where the highlighted landmark sits
   in each imagined key frame (from its mask), the metric label (distances, speeds, displacements) and the motion,
   before the answer.
3. The teacher prompt sends at most `max_frames` frames plus the overlays (the paper sends all frames, up to 50) and
   on a regeneration says why the previous attempt failed, so the request (and its cache key) changes.
"""

from __future__ import annotations

import numpy as np

from thinker4d.prompting import LETTERS, option_text, render_options


def _position_words(cx: float, cy: float) -> str:
    h = "left" if cx < 0.4 else "right" if cx > 0.6 else "centre"
    v = "upper" if cy < 0.4 else "lower" if cy > 0.6 else "middle"
    return "the centre" if h == "centre" and v == "middle" else f"the {v} {h}"


def mask_cues(masks: np.ndarray, key_frames) -> list[dict]:
    """Per key frame: centroid `(x, y)` as fractions of the width/height and the covered area fraction."""
    T, H, W = masks.shape
    out = []
    for f in key_frames:
        ys, xs = np.nonzero(masks[f])
        if len(xs):
            out.append(
                {
                    "frame": int(f),
                    "x": float(xs.mean() + 0.5) / W,
                    "y": float(ys.mean() + 0.5) / H,
                    "area": len(xs) / (H * W),
                }
            )
        else:
            out.append({"frame": int(f), "x": 0.5, "y": 0.5, "area": 0.0})
    return out


def _shift_words(a: dict, b: dict) -> str:
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    parts = []
    if abs(dx) > 0.03:
        parts.append(f"{abs(dx) * 100:.0f}% of the width to the {'right' if dx > 0 else 'left'}")
    if abs(dy) > 0.03:
        parts.append(f"{abs(dy) * 100:.0f}% of the height {'down' if dy > 0 else 'up'}")
    shift = " and ".join(parts) if parts else "barely at all across the image"
    ratio = b["area"] / max(a["area"], 1e-9)
    size = "looks larger" if ratio > 1.15 else "looks smaller" if ratio < 0.87 else "keeps about the same size"
    return f"it shifts {shift} and {size}"


def _turn_sentence(lb: dict) -> str:
    turn = lb["turn_deg"]
    if lb["orientation"] == "It does not turn":
        how = f"changes by only {abs(turn):.0f} degrees, so it does not turn"
    else:
        how = f"turns {abs(turn):.0f} degrees {'counter-clockwise, to the left' if turn > 0 else 'clockwise, to the right'}"
    return (
        f"Seen from above, its painted front goes from a heading of {lb['start_heading_deg'] % 360:.0f} to "
        f"{lb['end_heading_deg'] % 360:.0f} degrees (counter-clockwise from east): it {how}."
    )


_TASK_SENTENCES = {
    "object_direction": lambda lb: (
        f"Measured from the starting viewpoint it moves {abs(lb['lateral_m']):.1f} m "
        f"{'to the right' if lb['lateral_m'] > 0 else 'to the left'} and {abs(lb['forward_m']):.1f} m "
        f"{'away from' if lb['forward_m'] > 0 else 'toward'} the camera, so its motion is {lb['direction'].lower()}."
    ),
    "object_distance": lambda lb: (
        f"Its distance to the camera goes from about {lb['start_m']:.1f} m to about {lb['end_m']:.1f} m, "
        f"so it ends up {'closer' if lb['end_m'] < lb['start_m'] else 'farther'}"
        f"{'' if lb['distance_change'] != 'same' else ' only slightly: about the same distance'}."
    ),
    "object_speed": lambda lb: (
        f"While moving it covers about {lb['speed_m_s']:.2f} m per second, "
        f"which means {lb['speed_class'][0].lower() + lb['speed_class'][1:]}."
    ),
    "object_orientation": lambda lb: _turn_sentence(lb),
    "object_bbox": lambda lb: (
        f"In frame {lb['frame'] + 1} the highlighted region spans the box {lb['bbox_1000']} on the 0-1000 grid."
    ),
}


def templated_cot(request: dict) -> str:
    """The RuleTeacher's CoT: one sentence and one `<imagery>` per key frame, then the evidence and the answer.

    `request` keys: `task`, `question`, `options`, `answer`, `answer_text`, `label`, `landmark` (name), `role`
    (`static`/`dynamic`), `key_frames`, `cues` (from `mask_cues`), `fps`, `num_frames`.
    """
    name, role, cues, fps = request["landmark"], request["role"], request["cues"], request["fps"] or 1.0
    T = request["num_frames"]
    first, last = cues[0]["frame"], cues[-1]["frame"]
    lines = []
    if role == "static":
        lines.append(
            f"The question is about the camera over the whole clip (frames 1 to {T}, about {T / fps:.1f} s). "
            f"I anchor on the {name}, which stays still in the scene, so any change in where it appears comes from "
            "the camera."
        )
    else:
        lines.append(
            f"The question is about the {name}. I follow it from frame {first + 1} to frame {last + 1} "
            f"({first / fps:.1f} s to {last / fps:.1f} s), where it is visible."
        )
    for c in cues:
        lines.append(
            f"At frame {c['frame'] + 1} ({c['frame'] / fps:.1f} s) I picture the {name} near "
            f"{_position_words(c['x'], c['y'])} of the view, covering {c['area'] * 100:.1f}% of it: <imagery>"
        )
    lines.append(f"From the first to the last imagined view, {_shift_words(cues[0], cues[-1])}.")
    label = request.get("label") or {}
    if request["task"] == "camera_motion":
        lines.append(
            f"Since the {name} does not move, this apparent displacement is produced by the camera, whose motion is "
            f"{request['answer_text']}."
        )
    elif request["task"] in _TASK_SENTENCES:
        try:
            lines.append(_TASK_SENTENCES[request["task"]](label))
        except (KeyError, TypeError):
            lines.append(f"Following the {name} through these views, the answer is {request['answer_text']}.")
    else:
        lines.append(f"Following the highlighted views, the answer is {request['answer_text']}.")
    answer = option_text(request["options"], request["answer"])
    return "<think>" + " ".join(lines) + "</think><answer>" + answer + "</answer>"


def _shift_direction(a: dict, b: dict) -> str:
    """The apparent shift in words only (no percentages): what a small model can read off the imagery."""
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    parts = []
    if abs(dx) > 0.03:
        parts.append("right" if dx > 0 else "left")
    if abs(dy) > 0.03:
        parts.append("down" if dy > 0 else "up")
    ratio = b["area"] / max(a["area"], 1e-9)
    size = "grows" if ratio > 1.15 else "shrinks" if ratio < 0.87 else "keeps its size"
    return f"{' and '.join(parts) or 'nowhere'} and {size}"


def option_scan(options, answer: str) -> str:
    """The end of a compact CoT: the options read in order up to the correct one, each judged, then its letter and
    the answer block.

    `option_scan(["Tilt Up", "Pan Right", "Pan Left"], "B")` is
    `"A. Tilt Up? No. B. Pan Right? Yes = B.</think><answer>B. Pan Right</answer>"`.

    Each step is something a tiny transformer learns quickly: copy the next option line from the prompt, compare it
    with the motion the reasoning just named, and, after the "Yes", repeat the letter it wrote a few tokens back.
    Writing the letter right after the motion's name ("Pan Right = B.") instead asks for one long-range lookup (find
    the option whose text matches, copy the letter before it), which the quickstart's 2-layer model learned in some
    runs and not in others (docs/quickstart.md has the measurements).

    Args:
        options (`list[str]`): the question's options, with or without their letters.
        answer (`str`): the correct letter.
    """
    rendered = render_options(options)
    k = LETTERS.index(answer)
    if k >= len(rendered):
        raise ValueError(f"Answer {answer!r} is not one of the {len(rendered)} options {rendered!r}.")
    scan = " ".join(f"{line}? {'Yes' if i == k else 'No.'}" for i, line in enumerate(rendered[: k + 1]))
    return f"{scan} = {answer}.</think><answer>{rendered[k]}</answer>"


def compact_cot(request: dict) -> str:
    """A short RuleTeacher CoT: the landmark, one `<imagery>` per key frame, the apparent shift (in words), the motion
    named, then the options read in order up to that motion and its letter ([`option_scan`]):
    "The camera: Pan Right. A. Tilt Up? No. B. Pan Right? Yes = B.". Same structure and markers as [`templated_cot`],
    a fraction of its length, for small models trained from scratch (the quickstart), where every reasoning token
    costs compute. The option scan at its end is what lets a tiny model find the letter of a shuffled option list
    (docs/quickstart.md, "The option scan")."""
    name, cues = request["landmark"], request["cues"]
    role = "static" if request["role"] == "static" else "moving"
    imagery = " ".join("<imagery>" for _ in cues)
    shift = _shift_direction(cues[0], cues[-1])
    subject = "camera" if request["task"] == "camera_motion" else name
    return (
        f"<think>The {role} {name}: {imagery} It moves {shift}. The {subject}: {request['answer_text']}. "
        + option_scan(request["options"], request["answer"])
    )


IMAGERY_ONLY_BRIDGE = "I check each option against these views."


def imagery_only_cot(request: dict) -> str:
    """The imagery-only probe's CoT: [`compact_cot`] without the text that states what the imagery shows.

    The landmark and one `<imagery>` per key frame, then a fixed sentence that says nothing about the clip
    (`IMAGERY_ONLY_BRIDGE`), then the option scan ([`option_scan`]) and the answer:
    "The static white cube: <imagery> <imagery> I check each option against these views. A. Tilt Up? No. B. Pan Right?
    Yes = B.". The compact CoT's apparent shift ("It moves left and keeps its size.") and the motion it names ("The
    camera: Pan Right.") are left out, so a model trained on it writes nothing about the clip before the scan's "Yes":
    the scan copies the option lines of the prompt, and which one gets the "Yes" has to come from the frames and the
    imagery. Trained with DIFT next to a text CoT on the same rows (whose `<imagery>` markers are dropped) and raw-QA
    SFT, it asks whether the latents carry information the answer uses (docs/quickstart.md, "The imagery-only
    probe")."""
    name = request["landmark"]
    role = "static" if request["role"] == "static" else "moving"
    imagery = " ".join("<imagery>" for _ in request["cues"])
    return f"<think>The {role} {name}: {imagery} {IMAGERY_ONLY_BRIDGE} " + option_scan(
        request["options"], request["answer"]
    )


COT_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "reasoning": {"type": "STRING", "description": "the thinking, with the <imagery> markers"},
        "answer": {"type": "STRING", "description": "the chosen option, e.g. 'B. Pan Right'"},
    },
    "required": ["reasoning", "answer"],
}


def cot_prompt(request: dict) -> str:
    """The teacher prompt for one CoT (the paper's Figs. 10-11 flow, shortened). Frames and overlays go as images
    before this text: first the video frames, then the N overlays in time order."""
    n = len(request["key_frames"])
    opts = "\n".join(render_options(request["options"]))
    correct = option_text(request["options"], request["answer"])
    what = (
        f"the static landmark '{request['landmark']}' (it does not move, so its apparent motion is the camera's)"
        if request["role"] == "static"
        else f"the object '{request['landmark']}'"
    )
    frames_txt = ", ".join(str(f + 1) for f in request["key_frames"])
    text = (
        "You write a step-by-step reasoning for a video question as if you were imagining the scene.\n"
        f"Question: {request['question']}\nOptions:\n{opts}\n"
        f"The correct answer is: {correct}\n"
        f"The last {n} images are overlays highlighting {what} in red at frames {frames_txt}; "
        f"the video runs at {request['fps']:.2f} frames per second.\n"
        f"Use exactly {n} <imagery> markers, one per overlay in time order, each where you mentally picture "
        "that highlighted frame. First locate the relevant time span, introduce the landmark, picture it with the "
        "markers, then describe its displacement in words and name the motion before concluding.\n"
        "Return JSON with 'reasoning' (no <think> or <answer> tags) and 'answer' (the correct option, "
        f"e.g. '{correct}')."
    )
    if request.get("feedback"):
        text += f"\nAttempt {request.get('attempt', 0) + 1}: the previous answer was rejected ({request['feedback']})."
    return text


def assemble_cot(reasoning: str, answer: str, options) -> str:
    """`<think>reasoning</think><answer>A. ...</answer>`; the answer is normalised to its rendered option when it
    names one (else kept, so the validator rejects it)."""
    from .validate import parse_answer_letter

    letter = parse_answer_letter(str(answer), options)
    ans = option_text(options, letter) if letter else str(answer).strip()
    return f"<think>{str(reasoning).strip()}</think><answer>{ans}</answer>"


__all__ = [
    "COT_SCHEMA",
    "IMAGERY_ONLY_BRIDGE",
    "assemble_cot",
    "compact_cot",
    "cot_prompt",
    "imagery_only_cot",
    "mask_cues",
    "option_scan",
    "templated_cot",
]
