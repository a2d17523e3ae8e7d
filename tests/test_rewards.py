"""Adversarial tests for the 4DRL rewards (strict accuracy, anchored format with imagery blocks)."""

import subprocess
import sys

import pytest

from thinker4d.rewards import accuracy_reward, format_reward, is_well_formed


BLOCK = "<|latent_start|>" + "<|latent_pad|>" * 4 + "<|latent_end|>"
OPTIONS = ["A. Pan Left", "B. Pan Right", "C. Tilt Up", "D. Tilt Down"]


def wrap(answer, think="the camera moves"):
    return f"<think>{think}</think><answer>{answer}</answer>"


@pytest.mark.parametrize("answer", ["B", "B.", "(B)", "B. Pan Right", " b ", "B)"])
def test_accuracy_accepts(answer):
    assert accuracy_reward([wrap(answer)], ["B"]) == [1.0]


@pytest.mark.parametrize(
    "completion",
    [
        wrap("A"),  # wrong letter
        wrap("no idea"),  # no letter
        wrap("A or B"),  # several letters
        wrap("Based on the Camera motion"),  # capitals inside words only
        "<think>x</think> B",  # answer outside the tags
        "B",
        "",
        "<think>x</think><answer>B",  # truncated: no closing tag
        wrap(""),  # empty answer
        wrap("B. Tilt Up"),  # letter contradicts the option text
    ],
)
def test_accuracy_rejects(completion):
    assert accuracy_reward([completion], ["B"], options=[OPTIONS]) == [0.0]


def test_accuracy_conversational_and_solution_forms():
    comps = [[{"role": "assistant", "content": wrap("C")}], [{"role": "assistant", "content": wrap("C")}]]
    assert accuracy_reward(comps, solution=["C. Tilt Up", "(A)"]) == [1.0, 0.0]
    # falls back to the `answer` column; no solution at all is unscorable (None)
    assert accuracy_reward([wrap("D")], answer=["D"]) == [1.0]
    assert accuracy_reward([wrap("D")], solution=[None]) == [None]


def test_accuracy_uses_final_answer_block():
    text = "<think>maybe <answer>A</answer></think><answer>B</answer>"
    assert accuracy_reward([text], ["B"]) == [1.0]


def test_accuracy_bad_solution_and_lengths():
    with pytest.raises(ValueError, match="Row 0: solution 'Pan Right' is not an option letter"):
        accuracy_reward([wrap("B")], ["Pan Right"])
    with pytest.raises(ValueError, match="solution has 1 entries for 2 completions"):
        accuracy_reward([wrap("B"), wrap("B")], ["B"])


@pytest.mark.parametrize(
    "text",
    [
        wrap("B"),
        wrap("B. Pan Right", think=f"look {BLOCK} then {BLOCK} so"),
        f"  \n<think>{BLOCK}</think>\n<answer>B</answer>\n",
        wrap("B", think=""),
    ],
)
def test_format_accepts(text):
    assert format_reward([text], latent_size=4) == [1.0]
    assert format_reward([[{"role": "assistant", "content": text}]], latent_size=4) == [1.0]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "B",
        "<answer>B</answer>",  # no think
        "<think>x</think>",  # no answer
        "<think>x</think><answer>B",  # truncated
        "intro <think>x</think><answer>B</answer>",  # text before
        "<think>x</think><answer>B</answer> trailing",  # text after
        "<think>x<think>y</think></think><answer>B</answer>",  # nested think
        "<think>x</think><answer>B</answer><answer>C</answer>",  # duplicated answer
        "<think>x <answer>A</answer></think><answer>B</answer>",  # answer tag inside think
        "<answer>B</answer><think>x</think>",  # wrong order
        wrap("   "),  # empty answer
        wrap("B", think="<|latent_start|><|latent_pad|><|latent_pad|><|latent_end|>"),  # 2 pads, K = 4
        wrap("B", think="<|latent_start|>" + "<|latent_pad|>" * 4),  # unclosed block
        wrap("B", think="<|latent_pad|>"),  # stray slot
        wrap("B", think="<|latent_start|><|latent_start|>" + "<|latent_pad|>" * 4 + "<|latent_end|>"),  # nested
        wrap(f"B {BLOCK}"),  # imagery inside the answer
        f"{BLOCK}<think>x</think><answer>B</answer>",  # imagery outside think
    ],
)
def test_format_rejects(text):
    assert format_reward([text], latent_size=4) == [0.0]


def test_format_without_k_accepts_any_block_size():
    two = "<|latent_start|><|latent_pad|><|latent_pad|><|latent_end|>"
    assert is_well_formed(wrap("B", think=two))
    assert not is_well_formed(wrap("B", think=two), latent_size=4)
    assert not is_well_formed(wrap("B", think="<|latent_start|><|latent_end|>"))


def test_training_code_does_not_import_the_eval_package():
    # The answer parser and the video decoder that training shares with evaluation live in thinker4d.answers and
    # thinker4d.video, so rewards and trainers (and a trainer loading a row's video) never import thinker4d.eval.
    code = (
        "import sys, types, numpy as np, thinker4d.rewards as r, thinker4d.trainers as t\n"
        "for name in t.__all__: getattr(t, name)\n"
        "from thinker4d.trainers.rl_rows import load_row_video\n"
        "assert r.accuracy_reward(['<answer>B</answer>'], ['B']) == [1.0]\n"
        "args = types.SimpleNamespace(video_max_frames=2, video_fps=1.0, video_max_pixels=None)\n"
        "frames, fps = load_row_video({'frames': [np.zeros((4, 4, 3), np.uint8)] * 4, 'fps': 2.0}, 0, args)\n"
        "assert len(frames) == 2\n"
        "print(sorted(m for m in sys.modules if m == 'thinker4d.eval' or m.startswith('thinker4d.eval.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
