"""Shared offline fixtures: tiny random-weight Qwen2.5-VL / Qwen3-VL models with real processors, built in-process."""

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every test folder is new, so every dataset a test loads would leave an Arrow copy (and its `.map` caches) in the user's
# datasets cache for good; the suite keeps them in a folder of its own (subprocesses inherit it) and removes it at exit.
_DATASETS_CACHE = tempfile.mkdtemp(prefix="thinker4d-tests-datasets-")
atexit.register(shutil.rmtree, _DATASETS_CACHE, ignore_errors=True)
os.environ["HF_DATASETS_CACHE"] = _DATASETS_CACHE
import datasets  # noqa: E402  (after the variable, which it reads on import; set it as well in case it came first)


datasets.config.HF_DATASETS_CACHE = _DATASETS_CACHE
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(params=["qwen2_5_vl", "qwen3_vl"])
def backbone(request):
    return request.param


@pytest.fixture
def tiny_processor(backbone):
    from thinker4d.tiny import build_tiny_processor

    return build_tiny_processor(backbone)


@pytest.fixture
def tiny_base_model(backbone, tiny_processor):
    """A stock (not yet converted) tiny model of the current backbone."""
    from thinker4d.tiny import build_tiny_model

    return build_tiny_model(backbone, tiny_processor)


@pytest.fixture
def tiny_model_and_processor(backbone):
    """A converted thinker4d model (latent tokens added, K = 4) and its processor."""
    import thinker4d
    from thinker4d.tiny import build_tiny_model, build_tiny_processor

    processor = build_tiny_processor(backbone)
    base = build_tiny_model(backbone, processor)
    model, processor = thinker4d.from_base(base, processor, latent_size=4)
    return model.eval(), processor


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_frames(n=4, h=56, w=56, seed=0):
    """`n` random RGB uint8 frames, THWC."""
    return (np.random.default_rng(seed).random((n, h, w, 3)) * 255).astype("uint8")


def random_image(h=56, w=56, seed=0):
    from PIL import Image

    return Image.fromarray(random_frames(1, h, w, seed)[0])
