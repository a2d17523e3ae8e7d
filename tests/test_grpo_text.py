"""LatentGRPOTrainer on a text-only latent causal LM (the kind thinker4d's vLLM backend decodes), and the settings of
`use_vllm=True`. The GRPO step with vLLM rollouts runs in tests_vllm/ (it needs the vLLM environment)."""

import pytest
import torch
from datasets import Dataset

from test_grpo import BiasStart, RecordingReward, length_reward, make_args, make_rows, on_policy_args, tiny
from thinker4d.tiny import build_tiny_text_latent_model, build_tiny_tokenizer
from thinker4d.trainers.latent_grpo_config import LatentGRPOConfig
from thinker4d.trainers.latent_grpo_trainer import LatentGRPOTrainer
from thinker4d.trainers.latent_logps import latent_per_token_logps, sampling_logps
from thinker4d.vllm import LatentCompletion


def text_trainer(tmp_path, rows, **kw):
    model, tokenizer = build_tiny_text_latent_model(build_tiny_tokenizer())
    args = on_policy_args(tmp_path, num_generations=2, max_imagery_blocks=2, **kw)
    trainer = LatentGRPOTrainer(model, reward_funcs=[RecordingReward()], args=args,
                                train_dataset=Dataset.from_list(rows), processing_class=tokenizer)  # fmt: skip
    trainer.rollout_logits_processor = [BiasStart(trainer.latent_start_id, bias=4.0)]
    return trainer


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
def test_text_only_latent_lm_trains_on_policy(tmp_path, chat):
    """A Qwen2 causal LM whose config carries the latent fields trains: its rollouts open imagery blocks, and the
    recompute (latents written into the input embeddings) equals the sampling distribution through them."""
    prompts = [f"Question {i}: how far is the cube?" for i in range(4)]
    rows = [{"prompt": [{"role": "user", "content": p}] if chat else p} for p in prompts]
    trainer = text_trainer(tmp_path, rows)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    first = trainer.state.log_history[0]
    assert first["imagery/blocks_mean"] > 0, first  # the rollouts did open blocks: the latents were re-inserted
    assert first["sampling/latent_logp_diff/max"] <= 1e-4, first
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)]
    assert any("layers.1." in n for n in changed) and any("lm_head" in n for n in changed), changed


def test_text_only_recompute_reinserts_the_latents(tmp_path):
    """The text-only recompute depends on the latents it is given: other vectors at the slots change the log-probs of
    the text after the block, the fed ones reproduce the decoding's own scores."""
    model, tokenizer = build_tiny_text_latent_model(build_tiny_tokenizer())
    import thinker4d

    enc = tokenizer(["Where is the ball?"], return_tensors="pt")
    start = model.config.latent_start_id
    force = BiasStart(start, bias=50.0)
    out = thinker4d.latent_generate(model, **enc, max_new_tokens=12, do_sample=False, max_imagery_blocks=1,
                                    logits_processor=[force], return_dict_in_generate=True,
                                    output_logits=True)  # fmt: skip
    ids = out.sequences
    n = ids.shape[1] - enc["input_ids"].shape[1]
    assert (ids[0, -n:] == start).sum() == 1
    mask = torch.ones_like(ids)
    with torch.no_grad():
        logps, _ = latent_per_token_logps(model, ids, mask, n, out.latents, max_imagery_blocks=1)
        other, _ = latent_per_token_logps(
            model, ids, mask, n, [torch.randn_like(out.latents[0])], max_imagery_blocks=1
        )
    after = (ids[0, -n:] == model.config.latent_end_id).nonzero().item() + 1
    sampled = sampling_logps(torch.stack(out.logits, 1), ids[:, -n:], model.config, max_imagery_blocks=1)
    torch.testing.assert_close(logps, sampled, atol=1e-4, rtol=0)
    assert (other[0, after:] - logps[0, after:]).abs().max() > 1e-3


def test_text_only_model_refuses_video_rows(tmp_path):
    trainer = text_trainer(tmp_path, [{"prompt": "2+2="}] * 4)
    with pytest.raises(ValueError, match=r"Row 0 has a video or images, which a text-only model cannot take"):
        trainer._generate_and_score_completions(make_rows(2))


def test_vllm_settings(tmp_path):
    def config(**kw):
        return LatentGRPOConfig(str(tmp_path), use_cpu=True, bf16=False, report_to="none", use_vllm=True, **kw)

    assert config(vllm_mode="colocate").use_vllm
    with pytest.raises(ValueError, match=r"vllm_mode='server': trl's vLLM server .* use vllm_mode='colocate'"):
        config(vllm_mode="server")
    with pytest.raises(ValueError, match=r"vllm_tensor_parallel_size=2: the latent vLLM runner runs one worker"):
        config(vllm_mode="colocate", vllm_tensor_parallel_size=2)
    with pytest.raises(ValueError, match=r"on_imagery_limit='error': the vLLM backend suppresses"):
        config(vllm_mode="colocate", on_imagery_limit="error")
    with pytest.raises(ValueError, match=r"vllm_structured_outputs_regex: a grammar would fight the forced latent"):
        config(vllm_mode="colocate", vllm_structured_outputs_regex="[a-z]+")


def test_grpo_help_describes_thinker4d_vllm_settings():
    """`thinker4d grpo --help` says what thinker4d's `use_vllm` does and that only colocate mode runs, not trl's text
    offering the server mode the config refuses."""
    from thinker4d.commands.grpo import make_parser

    text = " ".join(make_parser().format_help().split())
    assert "thinker4d's vLLM backend" in text and "Must be one of `'server'` or `'colocate'`" not in text
    assert "Only 'colocate'" in text


def test_vllm_refuses_multimodal_and_unsaved_models(tmp_path):
    """Refused before any engine is built (no vLLM needed): the backend decodes text-only models, from a folder."""
    model, processor = tiny("qwen2_5_vl")
    args = make_args(tmp_path, use_vllm=True, vllm_mode="colocate")
    with pytest.raises(ValueError, match=r"use_vllm=True: thinker4d's vLLM backend decodes text-only latent models"):
        LatentGRPOTrainer(model, reward_funcs=[length_reward], args=args, processing_class=processor,
                          train_dataset=Dataset.from_list(make_rows(4)))  # fmt: skip
    text, tokenizer = build_tiny_text_latent_model(build_tiny_tokenizer())
    with pytest.raises(ValueError, match=r"this model has no `name_or_path`\. Save it with `save_pretrained`"):
        LatentGRPOTrainer(text, reward_funcs=[length_reward], args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_list([{"prompt": "2+2="}] * 4))  # fmt: skip


class StandInVLLMOutput:
    """A stand-in for vLLM's `CompletionOutput` (not vLLM): only the `logprobs` field, as vLLM fills it with
    `SamplingParams(logprobs=0)`: per step `{sampled token: object with .logprob}`."""

    def __init__(self, token_ids, values):
        self.logprobs = [{t: type("Logprob", (), {"logprob": v})()} for t, v in zip(token_ids, values)]


def test_rollout_from_completions_with_stand_in_vllm_output():
    """The conversion of the backend's `LatentCompletion` (the real dataclass) into the trainer's rollout rows, on a
    stand-in for vLLM's output object; tests_vllm/ checks it on the real engine."""
    from thinker4d.trainers.latent_vllm import rollout_from_completions

    lat = torch.randn(3, 8)
    ids = [7, 9, 9, 9, 8, 5]  # a text token, a block (start, three slots, end), a text token
    rows = [
        LatentCompletion([1, 2], ids, lat, [3, 4, 5], 1, StandInVLLMOutput(ids, [-1.5, 0, 0, 0, 0, -0.25])),
        LatentCompletion([1], [5], torch.zeros(0, 8), [], 0, StandInVLLMOutput([5], [-2.0])),
    ]
    completion_ids, logprobs, latents = rollout_from_completions(rows)
    assert completion_ids == [ids, [5]] and logprobs == [[-1.5, 0, 0, 0, 0, -0.25], [-2.0]]
    assert latents[0] is lat and latents[1].shape == (0, 8)
    rows[1].output.logprobs = None
    with pytest.raises(ValueError, match=r"Completion 1 has 0 log-probs for 1 tokens: sample with SamplingParams"):
        rollout_from_completions(rows)
