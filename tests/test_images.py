"""16-bit images reach the models scaled to 8 bits (never clipped to white) at every entry point: the DIFT collator's
frames and overlays (decoded or undecoded `datasets.Image`, files, arrays), SynthDSR and Dyn-Bench frames, and
`frames_to_array` (GRPO rollouts, eval)."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from thinker4d.images import to_rgb_array, to_rgb_image
from thinker4d.prompting import frames_to_array


def gradient16(h=28, w=28, seed=0):
    """A 16-bit grayscale gradient spanning 0..65535 (mode `I;16` as a PIL image) and its 8-bit equivalent."""
    rng = np.random.default_rng(seed)
    a = np.sort(rng.integers(0, 65536, size=h * w)).reshape(h, w).astype(np.uint16)
    return a, np.round(a / 257.0).astype(np.uint8)


def png16(a) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_sixteen_bit_pil_and_arrays_are_scaled():
    a, want = gradient16()
    im = Image.open(io.BytesIO(png16(a)))
    assert im.mode == "I;16"
    for value in (im, a, a.astype(">u2"), np.stack([a] * 3, -1)):
        got = to_rgb_array(value)
        assert got.dtype == np.uint8 and got.shape == (28, 28, 3)
        np.testing.assert_array_equal(got[..., 0], want)
        assert (got == 255).mean() < 0.05  # PIL's own convert("RGB") makes ~all of it 255
    assert to_rgb_image(a).mode == "RGB"
    # 8-bit inputs are unchanged
    rgb = (np.random.default_rng(1).random((4, 4, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(to_rgb_array(Image.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(to_rgb_array(rgb), rgb)


def test_ambiguous_images_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"frame 3: a 32-bit integer image \(PIL mode 'I'\) .* save it as 8-bit"):
        to_rgb_array(Image.new("I", (4, 4)), "frame 3")
    with pytest.raises(ValueError, match=r"overlay 0: int64 values span 0..4000, outside 0-255; pass uint8"):
        to_rgb_array(np.array([[0, 4000]]), "overlay 0")
    with pytest.raises(ValueError, match=r"image: an image must be H x W, H x W x 1, 3 or 4, got .* \(2, 2, 5\)"):
        to_rgb_array(np.zeros((2, 2, 5), np.uint8))


def test_frames_to_array_scales_sixteen_bit_frames():
    a, want = gradient16()
    im = Image.open(io.BytesIO(png16(a)))
    np.testing.assert_array_equal(frames_to_array([im, im])[1, ..., 0], want)
    np.testing.assert_array_equal(frames_to_array(np.stack([np.stack([a] * 3, -1)] * 2))[0, ..., 2], want)


def test_dift_collator_frames_and_overlays(tmp_path):
    """The same row with 16-bit and with 8-bit frames and overlays gives the same model inputs, whether the images come
    decoded, as `datasets.Image` bytes (what DIFTTrainer reads) or as files."""
    import datasets

    from test_dift import make_row, tiny
    from thinker4d.trainers import DIFTDataCollator

    _, processor = tiny("qwen2_5_vl")
    collator = DIFTDataCollator(processor, latent_size=4)
    pairs = [gradient16(seed=s) for s in range(3)]
    row8 = make_row(0, n_imagery=1, n_frames=2, frames=[w for _, w in pairs[:2]], imagery=[pairs[2][1]])
    want = collator([row8])
    for i, (a, _) in enumerate(pairs):
        (tmp_path / f"{i}.png").write_bytes(png16(a))
    rows16 = [
        make_row(0, n_imagery=1, n_frames=2, frames=[a for a, _ in pairs[:2]], imagery=[pairs[2][0]]),
        make_row(0, n_imagery=1, n_frames=2, frames=[str(tmp_path / "0.png"), str(tmp_path / "1.png")],
                 imagery=[str(tmp_path / "2.png")]),
    ]  # fmt: skip
    ds = datasets.Dataset.from_list([{**rows16[1], "frames": [Image.open(tmp_path / f"{i}.png") for i in (0, 1)],
                                      "imagery": [Image.open(tmp_path / "2.png")]}])  # fmt: skip
    assert ds[0]["frames"][0].mode == "I;16"
    rows16.append(ds[0])
    rows16.append(ds.cast_column("frames", datasets.List(datasets.Image(decode=False))).cast_column(
        "imagery", datasets.List(datasets.Image(decode=False)))[0])  # fmt: skip
    for row in rows16:
        got = collator([row])
        for key in ("pixel_values_videos", "imagery_pixel_values"):
            np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-6, err_msg=key)


def test_eval_frames_synthdsr_and_dyn_bench(tmp_path):
    import datasets

    from test_eval import OPTS
    from thinker4d.eval.tasks import DynBench, SynthDSR

    a, want = gradient16()
    im = Image.open(io.BytesIO(png16(a)))
    ds = datasets.Dataset.from_dict(
        {
            "id": ["r0"],
            "frames": [[im, im]],
            "fps": [2.0],
            "task": ["camera_motion"],
            "question": ["Q?"],
            "options": [OPTS],
            "answer": ["B"],
        }  # fmt: skip
    )
    ds.save_to_disk(tmp_path / "synth")
    frames, fps = SynthDSR().load(tmp_path / "synth")[0].frames()
    assert frames.dtype == np.uint8 and fps == 2.0
    np.testing.assert_array_equal(frames[0, ..., 1], want)

    (tmp_path / "dyn" / "multi_json" / "davis").mkdir(parents=True)
    scene = tmp_path / "dyn" / "frames" / "davis" / "bear"
    scene.mkdir(parents=True)
    for j in range(2):
        (scene / f"frame_{j:04d}.png").write_bytes(png16(a))
    qa = [{"question": "Which moves?", "options": ["A. bear", "B. rock"], "answer": "a"}]
    (tmp_path / "dyn" / "multi_json" / "davis" / "bear_cameraqa.json").write_text(json.dumps(qa))
    frames, _ = DynBench().load(tmp_path / "dyn")[0].frames()
    np.testing.assert_array_equal(frames[1, ..., 0], want)
