"""`generate` of the thinker4d classes keeps transformers' contract: with no imagery block in play it is the stock class's
`generate` (same weights, same arguments, same outputs, cache types and errors); with blocks in play every argument
works or raises a clear error."""

import inspect
import warnings

import pytest
import torch

from test_models import image_inputs


def stock_twin(model):
    """The stock transformers class with the same config values and weights."""
    stock_cls = type(model).__mro__[2]  # (thinker4d class, mixin, stock class, ...)
    assert stock_cls.__module__.startswith("transformers.")
    config = stock_cls.config_class(**{k: v for k, v in model.config.to_dict().items() if k != "model_type"})
    config._attn_implementation = model.config._attn_implementation
    stock = stock_cls(config).eval()
    stock.load_state_dict(model.state_dict())
    stock.generation_config = model.generation_config
    return stock


@pytest.fixture
def pair(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    return model, stock_twin(model), processor


def test_forward_takes_the_cache_under_the_stock_name(pair):
    """The forward names its cache argument as the stock forward does (`cache`, the old `past_key_values` still
    accepted), so `generate` passes it without a deprecation warning at every step, and the latent path sees it."""
    model, stock, processor = pair
    ours = inspect.signature(model.forward).parameters
    assert "cache" in ours and "cache" in inspect.signature(stock.forward).parameters
    assert "past_key_values" not in ours
    inputs = image_inputs(processor, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert not [w for w in caught if "past_key_values" in str(w.message)]
    ids = processor.tokenizer("a<|latent_start|><|latent_pad|><|latent_end|>", return_tensors="pt")["input_ids"]
    latents = torch.zeros(1, model.config.text_config.hidden_size)
    for name in ("cache", "past_key_values"):
        cache = model(input_ids=ids[:, :1], use_cache=True).cache
        with pytest.raises(ValueError, match="latent_embeds cannot be combined with a non-empty cache"):
            model(input_ids=ids, latent_embeds=latents, **{name: cache})
