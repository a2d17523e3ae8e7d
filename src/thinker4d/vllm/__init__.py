"""A vLLM backend for thinker4d's latent imagery decoding (`pip install thinker4d[vllm]`).

[`LatentLLM`] decodes with the semantics of `thinker4d.latent_sample` on a vLLM engine: per-request imagery blocks,
K slots each fed with the request's previous last-layer post-norm hidden state (scaled to `latent_norm` when the
config sets it), a forced `<|latent_end|>`, `<|latent_pad|>` / `<|latent_end|>` never sampled, and a per-request block
limit (`max_imagery_blocks`, suppressing `<|latent_start|>` once reached). It returns per completion the fed latents
and their positions. It plugs into vLLM through its extension points only: a worker class (`worker_cls`) that builds
the latent model runner, a V1 logits processor, and `collective_rpc` for the latents. See docs/vllm.md for the
supported vLLM version and what is not supported.

The backend reads the latent fields from the model's config.json and does not import thinker4d's model classes, so
it runs under the transformers version that vLLM pins. The names below load vLLM on first use, so the package's
vLLM-free parts (`LatentCompletion`, the config fields) import without it.
"""

from ._latent import LatentCompletion


def __getattr__(name: str):
    if name in ("LatentLLM", "fetch_latents", "latent_engine_kwargs", "latent_sampling_params"):
        from . import llm

        return getattr(llm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LatentCompletion", "LatentLLM", "fetch_latents", "latent_engine_kwargs", "latent_sampling_params"]
