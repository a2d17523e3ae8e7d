"""The offline end-to-end main job: synthetic world -> 4D CoT synthesis -> DIFT -> 4DRL -> SynthDSR evaluation against
the untrained model and the paper's supervised ablations (raw-QA SFT, text-only CoT SFT), with a report.

Paper: https://huggingface.co/papers/2605.05997 (Table 3: Raw QA SFT / CoT SFT / DIFT / DIFT + 4DRL). What differs
from the paper, and why:

1. Scale. Everything runs on a CPU in minutes: a tiny Qwen2.5-VL (random init, 2 text layers) instead of
   Qwen2.5-VL-3B, 1,600 synthetic clips of 8 frames at 56 px instead of 38K SpatialVID samples, 800 optimizer steps
   per supervised model. The numbers say whether the *mechanism* trains, not what the paper's model scores.
2. The tokenizer is byte-level BPE learned from the training texts in milliseconds (a real Qwen vocabulary would
   make the tiny model's output layer dominate the compute).
3. The learning rate is the one that trains a tiny random model (2e-3, cosine), not the paper's 1e-5 for a
   pretrained 3B model, and the CE weight is 1.0 instead of 0.1 (a model from scratch must also learn the language).
   All three supervised variants get the same data, steps, batch, learning rate and loss weights.
4. The rule teacher writes its compact CoT (`cot_style="compact"`), and the world's camera motion is restricted to
   four rotations (`camera_motions`), which a tiny model learns in minutes; SynthDSR is built with the same
   restriction, so training and evaluation match.
5. The RL phase is short (tens of steps) and only shows that 4DRL runs on-policy from the DIFT model (rollouts
   sample with the paper's temperature 1.0 and top_p 0.9).
6. A random model cannot read a multiple-choice list, and a pretrained LLM can: every model (the "untrained" one
   included) starts from a short option-reading warm-up ([`option_reading_rows`]: "Which option says Tilt Up?"
   over the training set's option texts; the clip carries no information about the answer), because mapping the
   motion it names to the shuffled option letter is what a random model fails to learn within the budget
   (docs/quickstart.md).
7. DIFT scales every vector at a latent slot to the token-embedding norm (`DIFTConfig.latent_norm="embedding"`), in
   training and decoding alike; unscaled (the paper), the slots carry pooled vision features in training and
   last-layer hidden states at inference, whose norms can be far from the token embeddings' (docs/dift.md).
8. Reading the shuffled option letter was this tiny model's bottleneck: it named the motion and paired it with a
   wrong letter. The compact CoT therefore ends with an option scan, "The camera: Pan Right. A. Tilt Up? No. B. Pan
   Right? Yes = B." ([`thinker4d.data.cot.option_scan`]), and the warm-up trains the same scan (docs/quickstart.md).
   `--num-kv-heads`, `--warmup-steps` and `--option-orders` are knobs for experiments on this bottleneck.
9. Every model is also evaluated blind (mid-grey frames), and the DIFT models under latent interventions (zero,
   Gaussian, shuffled, mean vectors at the imagery slots), with 95% bootstrap intervals on every accuracy and on each
   control's difference to the real run: the paper reports no control that shows whether its imagery is used.

Every stage writes its results under the output folder and a `DONE.json` marker last; a rerun (for instance after
Ctrl-C) reuses finished stages, which keep the times recorded when they ran, and resumes unfinished ones (synthesis per
clip, training from the last checkpoint, evaluation per question). While it runs, `datasets_cache/` in the output
folder holds the datasets cache of the training data (its Arrow copy and pre-encoded rows); the folder is removed when
the run finishes.

Two options widen the study (docs/quickstart.md): `seeds` trains and evaluates every model with several training seeds
(each in `seed_<s>/`; the data and SynthDSR are shared) and reports the mean over them with its spread; `probe` adds
the imagery-only probe, text CoT and DIFT trained on CoTs of the same clips that state nothing of what the imagery
shows (`cot_style="imagery_only"`), which asks whether the latents carry information the answer uses.

Modules: `config` (the settings), `stages` (stage folders and `DONE.json`, synthesis, SynthDSR, the tiny model),
`warmup` (option-reading rows, option-order copies), `training` (DIFT variants, 4DRL), `evaluation`, `aggregate`
(numbers over the seeds, intervals, comparisons), `report` (plots, report.md/html, verdict) and `runner`
([`run_quickstart`]).
"""

from .aggregate import summarize
from .config import CACHE_DIR, LABELS, LATENT_SIZE, MODELS, PROBE_MODELS, TRAINED, QuickstartConfig
from .evaluation import answer_text_accuracy, chance_accuracy, reasoning_trace, stage_eval
from .report import plot_accuracy, plot_losses, write_report
from .runner import run_quickstart
from .stages import Stage, stage_data, stage_init, stage_synthdsr
from .training import stage_grpo, stage_train
from .warmup import option_order_variants, option_reading_rows


__all__ = [
    "CACHE_DIR",
    "LABELS",
    "LATENT_SIZE",
    "MODELS",
    "PROBE_MODELS",
    "TRAINED",
    "QuickstartConfig",
    "Stage",
    "answer_text_accuracy",
    "chance_accuracy",
    "option_order_variants",
    "option_reading_rows",
    "plot_accuracy",
    "plot_losses",
    "reasoning_trace",
    "run_quickstart",
    "stage_data",
    "stage_eval",
    "stage_grpo",
    "stage_init",
    "stage_synthdsr",
    "stage_train",
    "summarize",
    "write_report",
]
