"""The synthetic 4D world: procedural clips with exact geometry (https://huggingface.co/papers/2605.05997).

Camera poses, intrinsics, depth, instance masks and object tracks are all known exactly, so every question label is
computed from geometry. See docs/world.md for the conventions (world Z up, OpenCV camera, z-depth in metres) and the
SpatialVID-like folder layout.

```python
>>> from thinker4d.world import render_clip, generate_questions
>>> clip = render_clip(7, num_frames=8, size=64)
>>> clip.frames.shape
(8, 64, 64, 3)
```
"""

from .camera import (
    CAMERA_MOTIONS,
    MOTION_ALIASES,
    camera_motion_labels,
    canonical_motion,
    matrix_to_pose,
    motion_label_text,
    pose_to_matrix,
)
from .clip import Clip, load_clip, save_clip
from .questions import QUESTION_TASKS, ask, generate_questions
from .render import render_clip, render_spec
from .scene import (
    SYNTHDSR_SEED_START,
    TRAIN_SEED_LIMIT,
    CameraSpec,
    ClipSpec,
    ObjectSpec,
    sample_clip_spec,
)
from .synthdsr import answer_balance, build_synthdsr


__all__ = [
    "CAMERA_MOTIONS",
    "MOTION_ALIASES",
    "QUESTION_TASKS",
    "SYNTHDSR_SEED_START",
    "TRAIN_SEED_LIMIT",
    "CameraSpec",
    "Clip",
    "ClipSpec",
    "ObjectSpec",
    "ask",
    "answer_balance",
    "build_synthdsr",
    "camera_motion_labels",
    "canonical_motion",
    "generate_questions",
    "load_clip",
    "matrix_to_pose",
    "motion_label_text",
    "pose_to_matrix",
    "render_clip",
    "render_spec",
    "sample_clip_spec",
    "save_clip",
]
