"""DSR-Train converter and the paper recipe for 4DRL."""

import pytest
from datasets import Dataset

from thinker4d.data.dsr_train import convert_dsr_train, dsr_train_to_rl_row
from thinker4d.trainers.rl_rows import check_rl_row


ROW = {"Question": "How does the camera move?", "A": "Pan Left", "B": "Pan Right", "C": "Tilt Up", "D": "Tilt Down",
       "Correct": "B. Pan Right", "video_path": "clips/v1.mp4", "Type": "abs_dir"}  # fmt: skip


def test_converter_maps_columns_and_rows_pass_the_trainer_check():
    out = convert_dsr_train(Dataset.from_list([ROW, {**ROW, "Correct": "(d)", "video_path": "clips/v2.mp4"}]), "/v")
    assert out[0]["question"] == "How does the camera move?"
    assert out[0]["options"] == ["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"]
    assert [r["answer"] for r in out] == ["B", "D"]
    assert out[1]["video"] == "/v/clips/v2.mp4" and out[0]["task"] == "abs_dir" and out[0]["id"] == "v1/abs_dir/0"
    for i, row in enumerate(out):
        check_rl_row(row, i)


def test_converter_accepts_option_lists_and_frame_paths():
    row = {"question": "Q?", "options": ["x", "y"], "answer": "A", "frame_paths": ["f/0.png", "f/1.png"]}
    out = dsr_train_to_rl_row(row, 0)
    assert out["options"] == ["x", "y"] and out["frames"] == ["f/0.png", "f/1.png"] and out["video"] is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"Question": " "}, r"DSR-Train row 7: `Question` must be a non-empty string"),
        ({"B": None, "C": None, "D": None}, r"DSR-Train row 7: needs at least 2 options"),
        ({"Correct": "E"}, r"DSR-Train row 7: `Correct` must start with one of 'ABCD', got 'E'"),
        ({"video_path": None}, r"DSR-Train row 7: no `video_path`"),
    ],
)
def test_converter_bad_rows(change, message):
    with pytest.raises(ValueError, match=message):
        dsr_train_to_rl_row({**ROW, **change}, 7)


def test_paper_recipe_parses():
    from thinker4d.commands.grpo import make_parser

    script, args, model_args = make_parser().parse_args_and_config(
        args=[
            "--config",
            "examples/recipes/Qwen2.5-VL-3B/grpo/config_paper.yaml",
            "--use_cpu",
            "true",
            "--bf16",
            "false",
            "--report_to",
            "none",
            "--gradient_checkpointing",
            "false",
        ]  # fmt: skip
    )
    assert (args.learning_rate, args.num_generations, args.beta) == (1e-6, 8, 0.01)
    assert (args.temperature, args.top_p, args.reward_weights) == (1.0, 0.9, [1.0, 0.2])
    assert model_args.model_name_or_path == "out/dift-3b"
