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

import contextlib
import inspect

from transformers import GenerationMixin

from .generation import latent_sample


@contextlib.contextmanager
def _last_hidden_state_adapter(model):
    """Give a stock-class model's forward the `output_last_hidden_state` behaviour of the thinker4d classes.

    `latent_sample` asks the forward for the post-norm last hidden state (the input of `lm_head`). The thinker4d classes
    return it; a stock Qwen-VL class does not, so for those the input of `lm_head` is captured with hooks for the
    duration of the call and attached to the output. Nothing is changed when the forward already supports it.
    """
    if "output_last_hidden_state" in inspect.signature(model.forward).parameters:
        yield
        return
    captured = {}

    def strip_flag(module, args, kwargs):
        captured["want"] = bool(kwargs.pop("output_last_hidden_state", False))
        return args, kwargs

    def grab_lm_head_input(module, args):
        captured["hidden"] = args[0]

    def attach(module, args, kwargs, output):
        if captured.pop("want", False):
            output.last_hidden_state = captured.pop("hidden")
        return output

    handles = [
        model.register_forward_pre_hook(strip_flag, with_kwargs=True),
        model.get_output_embeddings().register_forward_pre_hook(grab_lm_head_input),
        model.register_forward_hook(attach, with_kwargs=True),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def generate(*args, model, **kwargs):
    """Run `model.generate` with the latent decoding loop (`latent_sample`).

    Takes every argument of `GenerationMixin.generate`, plus `max_imagery_blocks` (`int`, *optional*: the most imagery
    blocks one sequence may open) and `on_imagery_limit` (`"suppress"` (default): mask `<|latent_start|>` once the
    limit is reached; `"error"`: raise). With `return_dict_in_generate=True` the output also has `latents`,
    `latent_positions` and `imagery_blocks`.
    """
    kwargs.pop("custom_generate", None)
    kwargs.pop("trust_remote_code", None)
    with _last_hidden_state_adapter(model):
        # GenerationMixin.generate directly: a thinker4d class overrides `generate` to add this same loop.
        return GenerationMixin.generate(model, *args, custom_generate=latent_sample, **kwargs)
