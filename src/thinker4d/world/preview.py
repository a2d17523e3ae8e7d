"""Contact sheets: a few frames of each clip with its questions and answers, to check by eye that a person could
answer them (https://huggingface.co/papers/2605.05997; not in the paper)."""

from __future__ import annotations

import textwrap

import numpy as np


def contact_sheet(clips, questions=None, path=None, num_frames: int = 5, scale: int = 2, masks: bool = False):
    """A PIL image with one block per clip: `num_frames` evenly spaced frames (and their instance masks when
    `masks`), then the clip's questions with the correct option. Saved to `path` when given."""
    from PIL import Image, ImageDraw

    blocks = []
    for c, clip in enumerate(clips):
        idx = np.linspace(0, clip.num_frames - 1, min(num_frames, clip.num_frames)).round().astype(int)
        tiles = [clip.frames[i] for i in idx]
        if masks and clip.instance_ids is not None:
            palette = (np.random.default_rng(0).random((256, 3)) * 255).astype(np.uint8)
            palette[0] = 0
            tiles += [palette[clip.instance_ids[i]] for i in idx]
        h, w = clip.height * scale, clip.width * scale
        cols = len(idx)
        rows = (len(tiles) + cols - 1) // cols
        qs = (questions[c] if questions is not None else []) or []
        text = [f"{clip.clip_id}  camera: {clip.camera_motion}  objects: {', '.join(clip.object_names)}"]
        for q in qs:
            opts = "  ".join(f"{'ABCDEFGH'[k]}. {o}" for k, o in enumerate(q["options"]))
            text += textwrap.wrap(f"[{q['task']}] {q['question']}", 150)
            text += textwrap.wrap(f"    {opts}   ->  {q['answer']}. {q['answer_text']}", 150)
        width = max(cols * (w + 4), 1000)
        img = Image.new("RGB", (width, rows * (h + 4) + 14 * len(text) + 8), "white")
        for k, tile in enumerate(tiles):
            im = Image.fromarray(tile).resize((w, h), Image.NEAREST)
            img.paste(im, ((k % cols) * (w + 4), (k // cols) * (h + 4)))
        draw = ImageDraw.Draw(img)
        for k, line in enumerate(text):
            draw.text((4, rows * (h + 4) + 4 + 14 * k), line, fill="black")
        blocks.append(img)
    sheet = Image.new("RGB", (max(b.width for b in blocks), sum(b.height + 10 for b in blocks)), (200, 200, 200))
    y = 0
    for b in blocks:
        sheet.paste(b, (0, y))
        y += b.height + 10
    if path is not None:
        sheet.save(path)
    return sheet
