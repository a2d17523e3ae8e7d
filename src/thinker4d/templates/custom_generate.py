"""`custom_generate/generate.py` of a thinker4d Hub repository: latent-imagery decoding for any Qwen-VL model whose
config carries the latent fields (`latent_start_id`, `latent_pad_id`, `latent_end_id`, `latent_size`).

Paper: https://huggingface.co/papers/2605.05997. This file is a template that `thinker4d.hub` copies next to an exact
copy of `thinker4d/models/generation.py` (the one decoding loop, `latent_sample`); it holds no decoding logic itself.

```python
>>> out = model.generate(**inputs, custom_generate="<repo or folder>", trust_remote_code=True,
...                      max_imagery_blocks=8, return_dict_in_generate=True)
>>> out.sequences, out.latents, out.latent_positions, out.imagery_blocks
```
"""

from transformers import GenerationMixin

from .generation import latent_sample


def generate(*args, model, **kwargs):
    """Run `model.generate` with the latent decoding loop (`latent_sample`).

    Takes every argument of `GenerationMixin.generate`, plus `max_imagery_blocks` (`int`, *optional*: the most imagery
    blocks one sequence may open) and `on_imagery_limit` (`"suppress"` (default): mask `<|latent_start|>` once the
    limit is reached; `"error"`: raise). With `return_dict_in_generate=True` the output also has `latents`,
    `latent_positions` and `imagery_blocks`.
    """
    kwargs.pop("custom_generate", None)
    kwargs.pop("trust_remote_code", None)
    # GenerationMixin.generate directly: a thinker4d class overrides `generate` to add this same loop. latent_sample
    # reads the fed-back hidden state from the input of lm_head, so it also runs on stock Qwen-VL classes.
    return GenerationMixin.generate(model, *args, custom_generate=latent_sample, **kwargs)
