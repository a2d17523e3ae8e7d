"""Build the tiny latent text model and decode it with thinker4d's own `latent_generate` (run in the project's main
environment, whose transformers version the thinker4d models need).

    python tests_vllm/make_reference.py OUT_DIR

writes `OUT_DIR/model/` (a Qwen2 causal LM whose config carries the latent fields) and `OUT_DIR/reference.pt`: per
prompt, the prompt ids, the greedy completion ids, the fed latents and their positions (counted from the first prompt
token), decoded one prompt at a time (batch 1, no padding).
"""

import sys
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

import thinker4d


TEXT_VOCAB = 96
START_ID, END_ID, PAD_ID = TEXT_VOCAB, TEXT_VOCAB + 1, TEXT_VOCAB + 2
EOS_ID = 3
LATENT_SIZE = 3
LATENT_NORM = 4.0
MAX_IMAGERY_BLOCKS = 3
MAX_NEW_TOKENS = 40
# Scale of the `<|latent_start|>` row of lm_head: large enough that random-weight rows open blocks, at steps that
# differ from prompt to prompt.
START_ROW_SCALE = 6.0


def build_model(seed: int = 0, hidden_size: int = 128, num_layers: int = 2) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=TEXT_VOCAB + 3,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=hidden_size // 32,
        num_key_value_heads=max(1, hidden_size // 64),
        head_dim=32,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=EOS_ID,
        pad_token_id=0,
    )
    for name, value in dict(
        latent_size=LATENT_SIZE,
        latent_start_id=START_ID,
        latent_end_id=END_ID,
        latent_pad_id=PAD_ID,
        latent_norm=LATENT_NORM,
    ).items():
        setattr(config, name, value)
    model = Qwen2ForCausalLM(config).float().eval()
    with torch.no_grad():
        model.lm_head.weight[START_ID] *= START_ROW_SCALE
    return model


def prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    lengths = [5, 9, 3, 12, 7, 4, 10, 6]
    rows = [torch.randint(4, TEXT_VOCAB, (n,), generator=generator).tolist() for n in lengths]
    return [*rows, [*rows[0], START_ID]]  # the last prompt ends with <|latent_start|>: its block opens at once


def main(out: Path) -> None:
    torch.set_num_threads(1)
    model = build_model()
    model.save_pretrained(out / "model")
    model.generation_config.save_pretrained(out / "model")
    rows = []
    for ids in prompts():
        input_ids = torch.tensor([ids])
        result = thinker4d.latent_generate(
            model,
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            eos_token_id=EOS_ID,
            pad_token_id=0,
            max_imagery_blocks=MAX_IMAGERY_BLOCKS,
            return_dict_in_generate=True,
        )
        completion = result.sequences[0, len(ids) :].tolist()
        if EOS_ID in completion:
            completion = completion[: completion.index(EOS_ID) + 1]
        rows.append(
            dict(
                prompt=ids,
                completion=completion,
                latents=result.latents[0].float().clone(),
                positions=result.latent_positions[0].tolist(),
            )
        )
    settings = dict(max_new_tokens=MAX_NEW_TOKENS, max_imagery_blocks=MAX_IMAGERY_BLOCKS, eos_token_id=EOS_ID)
    torch.save(
        dict(rows=rows, settings=settings, transformers_version=__import__("transformers").__version__),
        out / "reference.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
