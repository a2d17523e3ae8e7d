"""The quickstart's settings ([`QuickstartConfig`]) and the names of its models and stages."""

from __future__ import annotations

from dataclasses import dataclass, field


MODELS = ("untrained", "raw_qa", "text_cot", "dift", "dift_grpo")
# The imagery-only probe (`--probe`): text CoT and DIFT trained on the imagery-only CoTs of the same clips.
PROBE_MODELS = ("probe_text_cot", "probe_dift")
LATENT_SIZE = 4  # K of the quickstart model (the paper's)
CACHE_DIR = "datasets_cache"  # under the output folder; removed when the run finishes
# The DIFTConfig mode each trained model uses.
TRAINED = {
    "warmup": "text_cot",
    "raw_qa": "raw_qa",
    "text_cot": "text_cot",
    "dift": "dift",
    "probe_text_cot": "text_cot",
    "probe_dift": "dift",
}
LABELS = {
    "warmup": "option-reading warm-up",
    "chance": "chance",
    "untrained": "untrained",
    "raw_qa": "raw-QA SFT",
    "text_cot": "text CoT SFT",
    "dift": "DIFT",
    "dift_grpo": "DIFT + 4DRL",
    "probe_text_cot": "probe: text CoT",
    "probe_dift": "probe: DIFT",
}


@dataclass
class QuickstartConfig:
    """Settings of `thinker4d quickstart` (every field is also a `--flag`).

    > Parameters that control the data

    Args:
        train_clips (`int`): synthetic training clips (world seeds 0..N-1).
        eval_questions (`int`): held-out SynthDSR questions (seeds >= 1,000,000).
        tasks (`list[str]`): question tasks, the same for training and SynthDSR.
        camera_motions (`list[str]`): the camera-motion classes of this small world (default the four rotations,
            which the tiny model learns within the default budget); distractors come from the same list, for
            training and SynthDSR alike. Pass all twelve SpatialVID classes for the full world.
        num_frames (`int`), size (`int`), fps (`float`): clip shape.

    > Parameters that control the models and training

    Args:
        hidden_size, num_layers, vision_hidden_size, vision_depth (`int`): the tiny Qwen2.5-VL.
        num_heads, num_kv_heads (`int`): its text attention heads (default grouped-query, 4 query and 2 key/value
            heads, the Qwen ratio).
        vocab_size (`int`): BPE vocabulary learned from the training texts.
        warmup_steps (`int`): steps of the option-reading warm-up ([`option_reading_rows`]) that every model, the
            untrained one included, starts from; 0 skips it.
        option_orders (`int`): copies of every training row with its options in other orders
            ([`option_order_variants`]; the warm-up gets as many draws); 1 trains on the rows as synthesized.
        sft_steps, batch_size (`int`), learning_rate (`float`): the same for raw-QA, text-CoT and DIFT.
        grpo_steps, num_generations (`int`), grpo_learning_rate (`float`): the 4DRL phase.
        max_new_tokens (`int`): generation budget of evaluation and rollouts; 0 derives it from the training CoTs.

    > Parameters that control the study

    Args:
        seed (`int`): the data's seed and the first training seed.
        seeds (`int`): training seeds: every model is trained and evaluated with the seeds `seed, seed + 1, ...,
            seed + seeds - 1` (its random initial weights, warm-up draws and batch order), each in `seed_<s>/`; the
            data and SynthDSR are the same for all. `summary.json` and the report give the mean over the seeds and
            their spread.
        probe (`bool`): also train the imagery-only probe: text CoT (`probe_text_cot`) and DIFT (`probe_dift`) on
            the same clips with `cot_style="imagery_only"` CoTs, which state nothing of what the imagery shows
            ([`thinker4d.data.cot.imagery_only_cot`]). The other models are the same with or without it.
    """

    train_clips: int = field(default=1600, metadata={"help": "synthetic training clips"})
    eval_questions: int = field(default=180, metadata={"help": "held-out SynthDSR questions"})
    tasks: list = field(
        default_factory=lambda: ["camera_motion", "object_distance"],
        metadata={"help": "question tasks (training and SynthDSR)"},
    )
    camera_motions: list = field(
        default_factory=lambda: ["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"],
        metadata={"help": "camera-motion classes of the quickstart world (training and SynthDSR alike)"},
    )
    num_frames: int = field(default=8, metadata={"help": "frames per clip"})
    size: int = field(default=56, metadata={"help": "clip height and width in pixels"})
    fps: float = field(default=4.0, metadata={"help": "clip frame rate"})
    hidden_size: int = field(default=128, metadata={"help": "text hidden size"})
    num_layers: int = field(default=2, metadata={"help": "text layers"})
    num_heads: int = field(default=4, metadata={"help": "text attention heads"})
    num_kv_heads: int = field(default=2, metadata={"help": "text key/value heads (grouped-query attention)"})
    vision_hidden_size: int = field(default=64, metadata={"help": "vision hidden size"})
    vision_depth: int = field(default=2, metadata={"help": "vision layers"})
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary size"})
    warmup_steps: int = field(
        default=800, metadata={"help": "option-reading warm-up steps before every model (0: none)"}
    )
    option_orders: int = field(
        default=1, metadata={"help": "copies of every training row, each with its options in another order (1: none)"}
    )
    sft_steps: int = field(default=800, metadata={"help": "optimizer steps per supervised model"})
    batch_size: int = field(default=16, metadata={"help": "rows per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "supervised learning rate"})
    grpo_steps: int = field(default=12, metadata={"help": "4DRL optimizer steps"})
    num_generations: int = field(default=4, metadata={"help": "4DRL group size G"})
    grpo_learning_rate: float = field(default=2e-5, metadata={"help": "4DRL learning rate"})
    max_new_tokens: int = field(
        default=0, metadata={"help": "generation budget for evaluation and 4DRL (0: from the longest training CoT)"}
    )
    seed: int = field(default=0, metadata={"help": "random seed (data, and the first training seed)"})
    seeds: int = field(default=1, metadata={"help": "training seeds per model (seed, seed+1, ...)"})
    probe: bool = field(
        default=False, metadata={"help": "also train the imagery-only probe (text CoT and DIFT on imagery_only CoTs)"}
    )

    def __post_init__(self):
        if self.train_clips < 8 or self.eval_questions < len(self.tasks):
            raise ValueError("Need train_clips >= 8 and eval_questions >= the number of tasks.")
        if self.sft_steps < 1 or self.batch_size < 1 or self.grpo_steps < 0 or self.warmup_steps < 0:
            raise ValueError("Need sft_steps >= 1, batch_size >= 1, grpo_steps >= 0 and warmup_steps >= 0.")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1 (training seeds per model), got {self.seeds}.")
        if self.option_orders < 1:
            raise ValueError(f"option_orders must be >= 1, got {self.option_orders}.")
        if self.num_heads < 1 or self.num_kv_heads < 1 or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a positive multiple of num_kv_heads ({self.num_kv_heads})."
            )
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of num_generations ({self.num_generations}) for "
                "the 4DRL phase."
            )
