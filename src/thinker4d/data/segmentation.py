"""Stage 3, segmentation: one mask track per landmark, and the consistency filter (https://huggingface.co/papers/2605.05997).

What differs from the paper (docs/paper_differences.md, section 10):

1. Masks come from the clip's ground truth when it has them (`GroundTruthSegmenter`), or from SAM2 *video propagation*
   through transformers' `Sam2VideoModel` with a point + box prompt (`Sam2Segmenter`). The paper runs SAM3 per frame
   with a text prompt and takes instance 0, so identity can switch between frames.
2. The consistency filter is geometric (`check_track`): a track that is lost (present in too few frames), too small,
   or jumps between consecutive frames is rejected with a reason. The paper asks Gemini to verify overlays, and a
   missing SAM3 silently produced empty masks.
"""

from __future__ import annotations

import numpy as np


class SegmentationError(ValueError):
    """Masks are unusable (wrong size, missing object); the message names the clip and the object."""


def check_track(
    masks: np.ndarray,
    min_area_frac: float = 0.001,
    min_present_frac: float = 0.5,
    max_jump_frac: float = 0.35,
    max_area_ratio: float = 6.0,
) -> str | None:
    """The consistency filter: `None` when the mask track is usable, else the reason (`lost`, `empty`, `jump`,
    `area_change`).

    Args:
        masks (`np.ndarray` of shape `(T, H, W)`, bool): the track.
        min_area_frac (`float`): a frame "has" the object when the mask covers at least this fraction of the image
            (the paper's overlay threshold, 0.1%).
        min_present_frac (`float`): the object must be present in at least this fraction of frames (Appendix A: 50%).
        max_jump_frac (`float`): largest allowed centroid jump between consecutive present frames, as a fraction of
            the image diagonal (identity switches jump).
        max_area_ratio (`float`): largest allowed area ratio between consecutive present frames.
    """
    T, H, W = masks.shape
    areas = masks.reshape(T, -1).sum(1)
    present = areas >= max(1, min_area_frac * H * W)
    if not present.any():
        return "empty"
    if present.sum() < max(2, int(np.ceil(min_present_frac * T))):
        return "lost"
    idx = np.nonzero(present)[0]
    cents = np.array([_centroid(masks[i]) for i in idx])
    jumps = np.linalg.norm(np.diff(cents, axis=0), axis=1) / np.hypot(H, W)
    if len(jumps) and jumps.max() > max_jump_frac:
        return "jump"
    a = areas[idx].astype(np.float64)
    if len(a) > 1 and (np.maximum(a[1:], a[:-1]) / np.minimum(a[1:], a[:-1])).max() > max_area_ratio:
        return "area_change"
    return None


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5


def mask_prompt(mask_track: np.ndarray, min_pixels: int = 1) -> dict | None:
    """Point + box prompt (pixels, on the first frame where the object is present) from a mask track."""
    for f in range(len(mask_track)):
        m = mask_track[f]
        if m.sum() >= min_pixels:
            ys, xs = np.nonzero(m)
            # the pixel nearest the centroid that is inside the mask (a centroid can fall outside a concave mask)
            cx, cy = xs.mean(), ys.mean()
            k = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
            return {
                "frame": f,
                "point": [int(xs[k]), int(ys[k])],
                "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
            }
    return None


class GroundTruthSegmenter:
    """Masks from the clip's own instance ids (synthetic world, SpatialVID `dyn_masks`)."""

    name = "ground_truth"

    def segment(self, clip, landmark: dict) -> np.ndarray:
        """`(T, H, W)` bool track of `landmark["name"]`.

        Raises:
            SegmentationError: when the clip has no masks, the object is unknown, or the masks have the wrong size.
        """
        if clip.instance_ids is None:
            raise SegmentationError(
                f"Clip {clip.clip_id} has no ground-truth masks; use segmenter 'sam2' for clips without masks."
            )
        if clip.instance_ids.shape != clip.frames.shape[:3]:
            raise SegmentationError(
                f"Clip {clip.clip_id}: masks have shape {clip.instance_ids.shape} but frames are "
                f"{clip.frames.shape[:3]}; regenerate masks at the frame size."
            )
        name = landmark["name"]
        if name not in clip.object_names:
            raise SegmentationError(f"Clip {clip.clip_id} has no object {name!r}; objects: {clip.object_names}.")
        return clip.instance_ids == clip.object_names.index(name) + 1


class Sam2Segmenter:
    """SAM2 video propagation through transformers (`Sam2VideoModel` + `Sam2VideoProcessor`).

    The landmark's prompt (`point` `[x, y]` and/or `box` `[x1, y1, x2, y2]` in pixels of `frame`) is added on its
    frame, then masks are propagated forward and, from a later frame, backward over the whole clip.

    Args:
        model (`str` or `Sam2VideoModel`): a checkpoint id/path (e.g. `"facebook/sam2.1-hiera-tiny"`) or a model.
        processor (`Sam2VideoProcessor`, *optional*): defaults to the checkpoint's processor.
        device (`str`, *optional*, defaults to `"cpu"`).

    Example:

    ```python
    >>> seg = Sam2Segmenter.tiny_random()        # random weights, for tests; real runs pass a checkpoint id
    ```
    """

    name = "sam2"

    def __init__(self, model, processor=None, device: str = "cpu"):
        import torch
        from transformers import Sam2VideoModel, Sam2VideoProcessor

        if isinstance(model, str):
            self.model_id = model
            processor = processor or Sam2VideoProcessor.from_pretrained(model)
            model = Sam2VideoModel.from_pretrained(model)
        else:
            self.model_id = getattr(model, "name_or_path", "") or "in-memory"
        if processor is None:
            raise ValueError("Pass a Sam2VideoProcessor together with an in-memory Sam2VideoModel.")
        self.model, self.processor, self.device = model.to(device).eval(), processor, device
        self.dtype = torch.float32

    @classmethod
    def tiny_random(cls, image_size: int = 256, seed: int = 0) -> Sam2Segmenter:
        """A 1.3 M-parameter random-weight SAM2 video model built in-process (offline tests; masks are noise)."""
        import torch
        from transformers import (
            Sam2ImageProcessor,
            Sam2VideoConfig,
            Sam2VideoModel,
            Sam2VideoProcessor,
            Sam2VideoVideoProcessor,
        )
        from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig

        F = image_size // 16
        backbone = Sam2HieraDetConfig(
            hidden_size=16,
            image_size=[image_size, image_size],
            blocks_per_stage=[1, 1, 2, 1],
            embed_dim_per_stage=[16, 32, 64, 128],
            num_attention_heads_per_stage=[1, 1, 1, 1],
            window_size_per_stage=[8, 4, 8, 4],
            global_attention_blocks=[3],
            window_positional_embedding_background_size=[4, 4],
        )
        cfg = Sam2VideoConfig(
            vision_config=dict(
                backbone_config=backbone,
                backbone_channel_list=[128, 64, 32, 16],
                backbone_feature_sizes=[[4 * F, 4 * F], [2 * F, 2 * F], [F, F]],
                fpn_hidden_size=128,
            ),
            prompt_encoder_config=dict(hidden_size=128, image_size=image_size, patch_size=16),
            mask_decoder_config=dict(hidden_size=128, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
            image_size=image_size,
            num_maskmem=3,
            memory_attention_hidden_size=128,
            memory_attention_num_layers=1,
            memory_attention_feed_forward_hidden_size=64,
            memory_attention_rope_feat_sizes=[F, F],
            memory_encoder_hidden_size=128,
            memory_encoder_output_channels=64,
            mask_downsampler_embed_dim=128,
            memory_fuser_embed_dim=128,
            memory_fuser_intermediate_dim=64,
        )
        torch.manual_seed(seed)
        model = Sam2VideoModel(cfg).eval()
        size = {"height": image_size, "width": image_size}
        proc = Sam2VideoProcessor(
            image_processor=Sam2ImageProcessor(size=size),
            video_processor=Sam2VideoVideoProcessor(size=size),
            target_size=image_size,
        )
        seg = cls(model, proc)
        seg.model_id = f"tiny-random-sam2-{image_size}"
        return seg

    def segment(self, clip, landmark: dict) -> np.ndarray:
        """`(T, H, W)` bool track of the prompted object.

        Raises:
            SegmentationError: when the landmark has neither a `point` nor a `box` prompt.
        """
        import torch

        point, box = landmark.get("point"), landmark.get("box")
        if point is None and box is None:
            raise SegmentationError(
                f"Clip {clip.clip_id}: landmark {landmark.get('name')!r} has no point or box prompt for SAM2."
            )
        T, H, W = clip.frames.shape[:3]
        f0 = int(landmark.get("frame", 0) or 0)
        sess = self.processor.init_video_session(video=clip.frames, inference_device=self.device, dtype=self.dtype)
        kwargs = {"inference_session": sess, "frame_idx": f0, "obj_ids": 1}
        if point is not None:
            kwargs["input_points"] = [[[[float(point[0]), float(point[1])]]]]
            kwargs["input_labels"] = [[[1]]]
        if box is not None:
            kwargs["input_boxes"] = [[[float(b) for b in box]]]
        self.processor.add_inputs_to_inference_session(**kwargs)
        out = np.zeros((T, H, W), dtype=bool)
        with torch.no_grad():
            self.model(inference_session=sess, frame_idx=f0)
            for reverse in (False, True) if f0 > 0 else (False,):
                for o in self.model.propagate_in_video_iterator(sess, start_frame_idx=f0, reverse=reverse):
                    m = self.processor.post_process_masks([o.pred_masks], original_sizes=[[H, W]], binarize=True)[0]
                    out[o.frame_idx] = np.asarray(m[0, 0].cpu().numpy(), dtype=bool)
        return out


def run_segmentation(clip, landmarks: dict, segmenter, **filter_kwargs) -> tuple[dict, dict]:
    """Segment every landmark (`{"static": lm, "dynamic": lm}`, values may be `None`) and apply `check_track`.

    Returns `(tracks {role: masks}, rejected {role: reason})`.
    """
    tracks, rejected = {}, {}
    for role, lm in landmarks.items():
        if lm is None:
            continue
        masks = segmenter.segment(clip, lm)
        if masks.shape != clip.frames.shape[:3]:
            raise SegmentationError(
                f"Clip {clip.clip_id}: {segmenter.name} returned masks of shape {masks.shape} for {lm['name']!r}, "
                f"expected {clip.frames.shape[:3]}."
            )
        reason = check_track(masks, **filter_kwargs)
        if reason is None:
            tracks[role] = masks
        else:
            rejected[role] = reason
    return tracks, rejected


__all__ = [
    "GroundTruthSegmenter",
    "Sam2Segmenter",
    "SegmentationError",
    "check_track",
    "mask_prompt",
    "run_segmentation",
]
