"""4DRL rows: checking them, turning them into trl prompts, loading their videos and encoding the prompts with their
videos and images in one processor call. [`~thinker4d.trainers.LatentGRPOTrainer`] calls these; they hold no trainer
state.

Rows are either docs/design.md RL rows (`question`, `options`, `answer`, and `frames` + `fps` or a `video` path),
rendered with `thinker4d.prompting`, or trl-style rows: a `prompt` (plain text, or conversational with images in trl's
`image` / `images` columns).
"""

from __future__ import annotations

import torch
from trl.data_utils import is_conversational, prepare_multimodal_messages

from thinker4d.prompting import LETTERS, build_messages, frames_to_array, render_options, video_kwargs


IMAGE_COLUMNS = ("image", "images")
# Per-row tensors `encode_prompts` returns for the log-prob recomputes. The image ones are not named `pixel_values` /
# `image_grid_thw`: trl's batch splitting would concatenate those lists, and its loss would pass them to the recompute.
ROW_TENSOR_KEYS = (
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
    "images_pixel_values",
    "images_grid_thw",
)


def row_name(row: dict, index: int) -> str:
    """`row 3 (id='x')`: how errors name a row."""
    rid = row.get("id")
    return f"row {index}" + (f" (id={rid!r})" if rid is not None else "")


def row_images(row: dict) -> list | None:
    """The row's images in trl's columns: `images` (a list) or `image` (one); `None` when it has none."""
    if row.get("images") is not None:
        return list(row["images"]) or None
    if row.get("image") is not None:
        return [row["image"]]
    return None


def check_rl_row(row: dict, index: int) -> None:
    """Raise a `ValueError` naming the row when it cannot become a 4DRL prompt.

    A row is either in the docs/design.md schema (`question`, `options`, `answer`, and `frames` + `fps` or a `video` path)
    or trl-style: a `prompt` that is a plain string or conversational, with images in trl's `image` / `images`
    columns (conversational prompts only, as in trl). DSR-Train rows go through
    [`thinker4d.data.dsr_train.convert_dsr_train`].
    """
    name = row_name(row, index)
    if row.get("prompt") is not None and row.get("question") is None:
        prompt = row["prompt"]
        if is_conversational({"prompt": prompt}):
            return
        if not isinstance(prompt, str):
            raise ValueError(
                f"{name}: `prompt` must be a string or a conversation ([{{'role': 'user', 'content': ...}}]), "
                f"got {type(prompt).__name__}."
            )
        visual = [
            c
            for c in ("image", "images", "frames", "video")
            if row.get(c) is not None and not (isinstance(row[c], (list, tuple, str)) and len(row[c]) == 0)
        ]
        if visual:
            raise ValueError(
                f"{name}: a plain-text `prompt` cannot carry `{visual[0]}`: multimodal rows need a conversational "
                "prompt ([{'role': 'user', 'content': 'What is in the image?'}]); the trainer applies the chat "
                "template and places the images and video."
            )
        return
    if "Question" in row or "Correct" in row:
        raise ValueError(
            f"{name} looks like a DSR-Train row (Question/Correct columns). Convert the dataset first: "
            "`thinker4d.data.dsr_train.convert_dsr_train(dataset, video_root=...)`."
        )
    question, options, answer = row.get("question"), row.get("options"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{name}: `question` must be a non-empty string, got {question!r}.")
    if options is None or isinstance(options, str) or len(options) < 2:
        raise ValueError(f"{name}: `options` must be a list of 2-8 option strings, got {options!r}.")
    try:
        render_options(options)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    if not isinstance(answer, str) or answer.strip()[:1] not in LETTERS[: len(options)] or not answer.strip():
        raise ValueError(
            f"{name}: `answer` must be the correct option letter among {LETTERS[: len(options)]!r}, got {answer!r}."
        )
    frames, video = row.get("frames"), row.get("video")
    if (frames is None or len(frames) == 0) and not video:
        raise ValueError(f"{name}: no video. Give `frames` (a list of images, with `fps`) or `video` (a file path).")
    if row_images(row):
        raise ValueError(
            f"{name}: a `question` row takes its visual input as a video (`frames` / `video`), not `image` / "
            "`images`. For an image question, give the row a conversational `prompt` with the images, as in trl."
        )


def prompt_kind(row: dict) -> str:
    """`"plain-text"` for a string `prompt`, `"conversational"` for `question` rows and chat prompts."""
    prompt = row.get("prompt") if row.get("question") is None else None
    return "plain-text" if isinstance(prompt, str) else "conversational"


def check_prompt_kind(row: dict, index: int, kind: str) -> None:
    """Raise when a row's prompt format differs from the others' (trl renders a batch one way, from its first row)."""
    if prompt_kind(row) != kind:
        raise ValueError(
            f"{row_name(row, index)} has a {prompt_kind(row)} prompt but row 0 has a {kind} one. Use one format for "
            "every row: `question` rows and conversational `prompt`s are chat, a string `prompt` is plain text."
        )


def check_rl_dataset(dataset) -> None:
    """Run [`check_rl_row`] and the one-prompt-format check on every row of a map-style data set."""
    if dataset is None or not hasattr(dataset, "column_names") or not hasattr(dataset, "__len__"):
        return  # iterable datasets are checked batch by batch at rollout time
    light = [c for c in dataset.column_names if c not in ("frames", "imagery", "cot", "image", "images")]
    kind = None
    for i, row in enumerate(dataset.select_columns(light)):
        if "frames" in dataset.column_names and "video" not in row and row.get("question") is not None:
            row = {**row, "video": True}  # frames exist as a column; emptiness is checked at rollout time
        check_rl_row(row, i)  # image columns are checked at rollout time, once decoded
        kind = kind or prompt_kind(row)
        check_prompt_kind(row, i, kind)


def load_row_video(row: dict, index: int, args):
    """`(frames, fps)` of the row's video (`frames` + `fps`, or a `video` path decoded at `args.video_fps`), capped at
    `args.video_max_frames`; `None` when the row has none. An unreadable video raises a `ValueError` naming the row."""
    from thinker4d.video import VideoError, cap_frames, decode_video

    name = row_name(row, index)
    frames, path = row.get("frames"), row.get("video")
    try:
        if frames is not None and len(frames):
            if isinstance(frames[0], str):
                from PIL import Image

                frames = [Image.open(f) for f in frames]
            arr = frames_to_array(frames)
            fps = float(row.get("fps") or 1.0)
            arr, fps, _ = cap_frames(arr, fps, args.video_max_frames)
            return arr, fps
        if path:
            arr, fps, _ = decode_video(
                path, fps=args.video_fps, max_frames=args.video_max_frames,
                max_pixels=args.video_max_pixels, cache_dir=False,
            )  # fmt: skip
            return arr, fps
    except (VideoError, ValueError, OSError) as e:
        raise ValueError(f"{name}: cannot load its video: {e}") from e
    return None


def to_trl_row(row: dict, index: int, has_video: bool) -> tuple[dict, dict]:
    """The row as trl's trainer gets it, and its `image` / `images` columns.

    A `question` row gets its chat `prompt` (and `solution`, the answer letter, for the rewards); a conversational
    `prompt` gets its images placed in it. The image columns are hidden from trl, whose own image path has no video
    and cannot batch rows without images; the trainer hands them back to the reward functions.
    """
    images = row_images(row)
    columns = {c: row[c] for c in IMAGE_COLUMNS if c in row}
    row = {k: v for k, v in row.items() if k not in IMAGE_COLUMNS}
    if row.get("question") is not None:
        row["prompt"] = build_messages(row["question"], row["options"], video=has_video)
        row.setdefault("solution", row["answer"])
    elif images:
        try:
            row["prompt"] = prepare_multimodal_messages(row["prompt"], images=images)
        except ValueError as e:
            raise ValueError(f"{row_name(row, index)}: {e}") from e
    return row, columns


def encode_prompts(processor, prompts: list, videos: list | None, is_vlm: bool, chat_template_kwargs: dict):
    """Apply the chat template to conversational `prompts` and encode them with their videos and images in one
    processor call.

    Returns `(prompt_ids, fields, per_row)`: the unpadded prompt ids, the batch's multimodal tensors for generation, and
    per row the [`ROW_TENSOR_KEYS`] tensors (`None` where the row has no video / no image).
    """
    n = len(prompts)
    per_row = {k: [None] * n for k in ROW_TENSOR_KEYS}
    videos = videos or [None] * n
    clean, images = [], []
    for prompt in prompts:
        messages = prepare_multimodal_messages(prompt) if is_vlm else prompt  # str content -> blocks (trl)
        messages = [
            {**m, "content": [{k: v for k, v in p.items() if v is not None} for p in m["content"]]}
            if isinstance(m.get("content"), list)
            else m
            for m in messages
        ]
        clean.append(messages)
        images.append(
            [p["image"] for m in messages if isinstance(m.get("content"), list) for p in m["content"]
             if p.get("type") == "image" and p.get("image") is not None]
        )  # fmt: skip
    texts = [
        processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True, **chat_template_kwargs)
        for p in clean
    ]
    present = [v for v in videos if v is not None]
    kw = video_kwargs(processor, [v[0] for v in present], [v[1] for v in present]) if present else {}
    flat_images = [im for row in images for im in row]
    if flat_images:
        kw["images"] = flat_images
    enc = processor(text=texts, padding=True, return_tensors="pt", **kw)
    prompt_ids = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]

    fields = {}
    if present:
        grid = enc["video_grid_thw"]
        pixels = torch.split(enc["pixel_values_videos"], grid.prod(-1).tolist())
        ts = enc.get("second_per_grid_ts")
        ts = torch.as_tensor(ts, dtype=torch.float32) if ts is not None else None
        j = 0
        for i, v in enumerate(videos):
            if v is None:
                continue
            per_row["pixel_values_videos"][i] = pixels[j]
            per_row["video_grid_thw"][i] = grid[j : j + 1]
            per_row["second_per_grid_ts"][i] = ts[j : j + 1] if ts is not None else None
            j += 1
        fields = {"pixel_values_videos": enc["pixel_values_videos"], "video_grid_thw": grid}
        if ts is not None:
            fields["second_per_grid_ts"] = ts
    if flat_images:
        grid = enc["image_grid_thw"]
        pixels = torch.split(enc["pixel_values"], grid.prod(-1).tolist())
        j = 0
        for i, row in enumerate(images):
            if row:
                per_row["images_pixel_values"][i] = torch.cat(pixels[j : j + len(row)])
                per_row["images_grid_thw"][i] = grid[j : j + len(row)]
                j += len(row)
        fields.update(pixel_values=enc["pixel_values"], image_grid_thw=grid)
    return prompt_ids, fields, per_row


__all__ = [
    "check_rl_dataset",
    "check_rl_row",
    "encode_prompts",
    "load_row_video",
    "to_trl_row",
]
