"""`custom_generate/generate.py` of a thinker4d Hub repository: latent-imagery decoding for any Qwen-VL model whose
config carries the latent fields (`latent_start_id`, `latent_pad_id`, `latent_end_id`, `latent_size`).

Paper: https://huggingface.co/papers/2605.05997. This file is a template that `thinker4d.hub` copies next to an exact
copy of `thinker4d/models/generation.py` (the one decoding loop, `latent_sample`, and its `latent_generate`); it holds no decoding logic itself.

```python
>>> out = model.generate(**inputs, custom_generate="<repo or folder>", trust_remote_code=True,
...                      max_imagery_blocks=8, return_dict_in_generate=True)
>>> out.sequences, out.latents, out.latent_positions, out.imagery_blocks
```
"""

from .generation import latent_generate


def generate(*args, model, **kwargs):
    """Run `model.generate` with the latent decoding loop, as `generate` of a thinker4d class does (`latent_generate`).

    Takes every argument of `GenerationMixin.generate`, plus `max_imagery_blocks` (`int`, *optional*: the most imagery
    blocks one sequence may open) and `on_imagery_limit` (`"suppress"` (default): mask `<|latent_start|>` once the
    limit is reached; `"error"`: raise), and the control `latent_intervention` (`"none"` default, `"zero"`,
    `"gaussian"`, `"shuffle"`, `"mean"` with `latent_mean=`: replace every fed-back vector). With
    `return_dict_in_generate=True` the output also has `latents` (the vectors fed), `latent_positions`,
    `imagery_blocks` and `intervened_slots`. Beam search and assisted decoding run transformers' own loops when
    `<|latent_start|>` cannot be produced (`suppress_tokens=[its id]` or `max_imagery_blocks=0`), and raise otherwise.
    """
    kwargs.pop("custom_generate", None)
    kwargs.pop("trust_remote_code", None)
    # latent_generate calls GenerationMixin.generate itself, and latent_sample reads the fed-back hidden state with a
    # hook on the final norm, so this runs on stock Qwen-VL classes too.
    return latent_generate(model, *args, **kwargs)
