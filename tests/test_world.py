"""The synthetic 4D world: camera classes, geometry, determinism, I/O (own + SpatialVID layout), questions, SynthDSR."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from thinker4d.world import (
    CAMERA_MOTIONS,
    SYNTHDSR_SEED_START,
    TRAIN_SEED_LIMIT,
    ask,
    build_synthdsr,
    camera_motion_labels,
    generate_questions,
    load_clip,
    matrix_to_pose,
    pose_to_matrix,
    render_clip,
    render_spec,
    sample_clip_spec,
    save_clip,
)
from thinker4d.world.camera import canonical_motion
from thinker4d.world.clip import write_video
from thinker4d.world.questions import QUESTION_TASKS


SMALL = {"num_frames": 8, "size": 64}


def _project(clip, X, t):
    """World points (N,3) -> pixel coordinates (N,2) and z-depth (N,) in frame t."""
    Xc = (clip.w2c[t, :3, :3] @ X.T).T + clip.w2c[t, :3, 3]
    uv = (clip.K @ Xc.T).T
    return uv[:, :2] / uv[:, 2:], Xc[:, 2]


def _static(spec):
    return dataclasses.replace(spec, objects=[dataclasses.replace(o, velocity=(0.0, 0.0, 0.0)) for o in spec.objects])


# ------------------------------------------------------------------------------------------------ camera classes

COMBOS = ["Dolly In + Pan Right", "Truck Left + Tilt Up", "Pedestal Down + Roll CCW", "Pan Left + Tilt Down"]


@pytest.mark.parametrize("motion", list(CAMERA_MOTIONS) + ["Stay"] + COMBOS)
def test_labeller_recovers_generating_class_from_poses(motion):
    for seed in (0, 1, 2):
        spec = sample_clip_spec(seed, num_frames=8, camera_motion=motion)
        w2c = np.linalg.inv(spec.camera.c2w(8))
        labels = camera_motion_labels(w2c)
        assert labels == (list(canonical_motion(motion)) or ["Stay"])
        # round trip through SpatialVID's (N,7) pose rows must not change the label
        assert camera_motion_labels(pose_to_matrix(matrix_to_pose(w2c))) == labels


def test_aliases_map_to_spatialvid_names():
    assert canonical_motion("Move Forward") == ("Dolly In",)
    assert canonical_motion("Pan Right + Move Up") == ("Pedestal Up", "Pan Right")
    assert canonical_motion("Roll Clockwise") == ("Roll CW",)
    assert canonical_motion("Stay") == ()


def test_camera_classes_have_their_physical_meaning():
    """Each class moves the camera the way its name says, in world terms and in the image."""
    for motion in CAMERA_MOTIONS:
        spec = sample_clip_spec(4, num_frames=2, camera_motion=motion)
        c2w = spec.camera.c2w(2)
        (R0, p0), (R1, p1) = (c2w[0, :3, :3], c2w[0, :3, 3]), (c2w[1, :3, :3], c2w[1, :3, 3])
        right0, down0, fwd0 = R0.T
        move = p1 - p0
        expect = {
            "Dolly In": move @ fwd0 > 0.5,
            "Dolly Out": move @ fwd0 < -0.5,
            "Truck Right": move @ right0 > 0.5,
            "Truck Left": move @ right0 < -0.5,
            "Pedestal Up": move[2] > 0.5,  # world Z is up
            "Pedestal Down": move[2] < -0.5,
            "Pan Right": R1[:, 2] @ right0 > 0.15,  # the optical axis turns towards the old right
            "Pan Left": R1[:, 2] @ right0 < -0.15,
            "Tilt Up": R1[:, 2][2] > fwd0[2] + 0.1,
            "Tilt Down": R1[:, 2][2] < fwd0[2] - 0.1,
            "Roll CW": -R1[:, 1] @ right0 > 0.15,  # the camera's up vector leans to the right
            "Roll CCW": -R1[:, 1] @ right0 < -0.15,
        }[motion]
        assert expect, motion
    # in the image: a static point far ahead moves left when panning right and down when tilting up
    clip_r = render_clip(4, num_frames=2, size=64, camera_motion="Pan Right", num_objects=0)
    clip_u = render_clip(4, num_frames=2, size=64, camera_motion="Tilt Up", num_objects=0)
    X = (clip_r.c2w[0] @ np.array([0, 0, 20.0, 1]))[:3][None]
    assert _project(clip_r, X, 1)[0][0, 0] < _project(clip_r, X, 0)[0][0, 0] - 5
    assert _project(clip_u, X, 1)[0][0, 1] > _project(clip_u, X, 0)[0][0, 1] + 5


def test_layout_cue_pan_right_gets_redder_tilt_down_darker():
    red = lambda c: c.frames[..., 0].astype(float).mean(axis=(1, 2))  # noqa: E731
    bright = lambda c: c.frames.astype(float).mean(axis=(1, 2, 3))  # noqa: E731
    for seed in (0, 1):
        pr = render_clip(seed, camera_motion="Pan Right", num_objects=0, **SMALL)
        pl = render_clip(seed, camera_motion="Pan Left", num_objects=0, **SMALL)
        assert red(pr)[-1] - red(pr)[0] > red(pl)[-1] - red(pl)[0]
        td = render_clip(seed, camera_motion="Tilt Down", num_objects=0, **SMALL)
        assert bright(td)[-1] < bright(td)[0]


# ------------------------------------------------------------------------------------------------ geometry


def test_backprojection_lands_on_the_same_world_points_across_frames():
    spec = _static(sample_clip_spec(11, num_frames=6, size=96, camera_motion="Dolly In + Pan Right", num_objects=3))
    clip = render_spec(spec)
    H, W = clip.height, clip.width
    v, u = np.mgrid[0:H, 0:W]
    pix = np.stack([u + 0.5, v + 0.5, np.ones_like(u, dtype=float)], -1).reshape(-1, 3)
    rays = pix @ np.linalg.inv(clip.K).T
    ground_err, checked, agree = [], 0, 0
    for t in range(clip.num_frames):
        Xc = rays * clip.depth[t].reshape(-1, 1)
        Xw = (clip.c2w[t, :3, :3] @ Xc.T).T + clip.c2w[t, :3, 3]
        bg = clip.instance_ids[t].reshape(-1) == 0
        on_ground = bg & (np.abs(Xw[:, 2]) < 0.5) & (clip.depth[t].reshape(-1) < 40)
        ground_err.append(np.abs(Xw[on_ground, 2]).max())
        # every frame's points, seen from the last frame, agree with the last frame's depth map (up to occlusion)
        near = clip.depth[t].reshape(-1) < 25
        uv, z = _project(clip, Xw[near], clip.num_frames - 1)
        ui, vi = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        inside = (ui >= 1) & (ui < W - 1) & (vi >= 1) & (vi < H - 1) & (z > 0)
        d_other = clip.depth[-1][vi[inside], ui[inside]]
        checked += inside.sum()
        agree += (np.abs(d_other - z[inside]) < 0.03 * z[inside] + 0.02).sum()
    assert max(ground_err) < 1e-3  # ground pixels back-project onto z = 0
    assert checked > 10_000 and agree / checked > 0.9


def test_depth_is_exact_at_pixel_centres():
    clip = render_clip(3, num_frames=3, size=64, camera_motion="Truck Left")
    for name, pos in clip.tracks.items():
        obj = next(o for o in clip.objects if o["name"] == name)
        if obj["shape"] != "ball":
            continue
        for t in range(clip.num_frames):
            m = clip.masks[name][t]
            if not m.any():
                continue
            v, u = np.nonzero(m)
            rays = np.stack([u + 0.5, v + 0.5, np.ones_like(u, dtype=float)], -1) @ np.linalg.inv(clip.K).T
            Xw = (clip.c2w[t, :3, :3] @ (rays * clip.depth[t][v, u][:, None]).T).T + clip.c2w[t, :3, 3]
            np.testing.assert_allclose(np.linalg.norm(Xw - pos[t], axis=1), obj["size"][0] / 2, atol=2e-3)


def test_mask_centroid_follows_projected_trajectory():
    found = 0
    for seed in range(20):
        clip = render_clip(seed, num_frames=8, size=128)
        for o in clip.objects:
            if not o["moving"] or o["shape"] != "ball":
                continue
            for t in range(clip.num_frames):
                m = clip.masks[o["name"]][t]
                if m.sum() < 30 or m[:, [0, -1]].any() or m[[0, -1], :].any():
                    continue  # cut by the border: the centroid is biased
                occl = (clip.instance_ids[t] > 0) & ~m
                v, u = np.nonzero(m)
                box = max(np.ptp(u), np.ptp(v)) + 1
                if (occl[max(v.min() - 1, 0) : v.max() + 2, max(u.min() - 1, 0) : u.max() + 2]).any():
                    continue  # touching another object: may be occluded
                uv, _ = _project(clip, clip.tracks[o["name"]][t : t + 1], t)
                centroid = np.array([u.mean() + 0.5, v.mean() + 0.5])
                assert np.linalg.norm(centroid - uv[0]) < 1.0 + 0.1 * box, (seed, o["name"], t)
                found += 1
        if found > 20:
            break
    assert found > 20


def test_occlusion_nearest_object_wins():
    spec = sample_clip_spec(5, camera_motion="Stay", num_objects=2, **SMALL)
    cam = spec.camera.start_c2w()
    fwd = cam[:3, 2] * np.array([1, 1, 0])
    fwd /= np.linalg.norm(fwd)
    base = np.array(spec.camera.position) * np.array([1, 1, 0])
    near, far = base + 4 * fwd, base + 8 * fwd
    z = spec.camera.position[2]  # floating at eye height, so the near ball hides the far ball's centre
    ball = {"shape": "ball", "size": (1.0, 1.0, 1.0), "velocity": (0, 0, 0)}
    objs = [
        dataclasses.replace(spec.objects[0], name="far ball", position=(*far[:2], z), **ball),
        dataclasses.replace(spec.objects[1], name="near ball", position=(*near[:2], z), **ball),
    ]
    clip = render_spec(dataclasses.replace(spec, objects=objs))
    far_name, near_name = objs[0].name, objs[1].name
    uv, _ = _project(clip, np.array([[*far[:2], z]]), 0)
    u, v = int(uv[0, 0]), int(uv[0, 1])
    assert clip.object_names[clip.instance_ids[0, v, u] - 1] == near_name
    assert clip.depth[0, v, u] < 4.5
    assert clip.masks[far_name][0].sum() < clip.masks[near_name][0].sum()


def test_render_has_no_invalid_values_where_a_ray_component_is_exactly_zero():
    """A sky ray (no ground hit, t = inf) with dx exactly 0 gave inf * 0 = nan in the ground hit point; this clip has
    such a pixel. Rays missing a ball or a cylinder with an exactly-zero component did the same in their normals."""
    import warnings

    from thinker4d.world.render import _intersect

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clip = render_clip(
            1146, num_frames=8, size=56, camera_motions=["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"]
        )
        origin = np.zeros(3, np.float32)
        axis_rays = np.eye(3, dtype=np.float32)  # every ray has two components exactly 0, and all miss
        for shape in ("ball", "cylinder", "cube"):
            t, normal = _intersect(shape, (5.0, 5.0, 5.0), (1.0, 1.0, 1.0), 0.0, origin, axis_rays)
            assert np.isinf(t).all() and not np.isnan(normal).any(), shape
    assert np.isfinite(clip.depth).all() and (clip.depth > 0).all()


# ------------------------------------------------------------------------------------------------ determinism, errors


def test_same_seed_is_byte_identical_and_seeds_differ(tmp_path):
    a, b, c = render_clip(21, **SMALL), render_clip(21, **SMALL), render_clip(22, **SMALL)
    for field in ("frames", "depth", "instance_ids", "w2c"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
    assert a.frames.tobytes() != c.frames.tobytes() and a.depth.tobytes() != c.depth.tobytes()
    save_clip(a, tmp_path / "a")
    save_clip(b, tmp_path / "b")
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name
    assert generate_questions(a, seed=3) == generate_questions(b, seed=3)


def test_sizes_64_to_512():
    for size in (64, 512):
        clip = render_clip(2, num_frames=2, size=size)
        assert clip.frames.shape == (2, size, size, 3) and clip.depth.dtype == np.float32
    clip = render_clip(2, num_frames=2, height=64, width=96)
    assert clip.frames.shape == (2, 64, 96, 3) and clip.K[0, 2] == 48


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_frames": 0}, "num_frames must be a positive integer"),
        ({"size": -64}, "height must be a positive integer"),
        ({"size": 65}, "must be even"),
        ({"fps": 0}, "fps must be positive"),
        ({"camera_motion": "Zoom In"}, "Unknown camera motion 'Zoom In'.*Dolly In, Dolly Out"),
        ({"camera_motion": "Pan Left + Pan Right"}, "same axis"),
        ({"num_objects": 9}, "num_objects must be between 0 and 8"),
    ],
)
def test_bad_parameters_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_clip(0, **{**SMALL, **kwargs})


def test_training_api_refuses_held_out_seeds():
    with pytest.raises(ValueError, match="not a training seed.*held out for SynthDSR"):
        sample_clip_spec(SYNTHDSR_SEED_START + 5)
    with pytest.raises(ValueError, match="not a training seed"):
        render_clip(-1)
    with pytest.raises(ValueError, match="SynthDSR seeds start at"):
        sample_clip_spec(5, split="synthdsr")
    assert TRAIN_SEED_LIMIT <= SYNTHDSR_SEED_START
    assert sample_clip_spec(SYNTHDSR_SEED_START + 5, split="synthdsr").seed == SYNTHDSR_SEED_START + 5


def test_fronts_and_turns_change_only_the_paint_of_the_facing_objects():
    """Balls and cylinders look the same from every heading, so giving them a front and a turn (from their own random
    stream) leaves every position, mask and depth of a seed as without them: only the painted front differs."""
    facing_seen = 0
    for seed in range(6):
        spec = sample_clip_spec(seed, **SMALL)
        facing = [o.name for o in spec.objects if o.facing]
        assert all(o.shape in ("ball", "cylinder") for o in spec.objects if o.facing or o.turn_deg_s)
        plain = dataclasses.replace(
            spec,
            objects=[
                dataclasses.replace(o, facing=False, turn_deg_s=0.0, yaw_deg=o.yaw_deg if o.shape == "cube" else 0.0)
                for o in spec.objects
            ],
        )
        clip, ref = render_spec(spec), render_spec(plain)
        assert sorted(clip.headings) == sorted(facing) and ref.headings == {}
        assert np.array_equal(clip.instance_ids, ref.instance_ids) and np.array_equal(clip.depth, ref.depth)
        painted = np.isin(clip.instance_ids, [clip.object_names.index(n) + 1 for n in facing])
        assert np.array_equal(clip.frames[~painted], ref.frames[~painted])
        facing_seen += len(facing)
        for o in spec.objects:
            if o.facing:
                np.testing.assert_allclose(clip.headings[o.name], o.yaw_deg + o.turn_deg_s * spec.times)
                assert (clip.frames[painted] != ref.frames[painted]).any()
    assert facing_seen > 0


# ------------------------------------------------------------------------------------------------ save / load


def test_save_load_round_trip(tmp_path):
    clip = render_clip(9, **SMALL)
    back = load_clip(save_clip(clip, tmp_path / clip.clip_id))
    assert back.clip_id == clip.clip_id and back.fps == clip.fps
    np.testing.assert_allclose(back.w2c, clip.w2c, atol=1e-9)
    np.testing.assert_allclose(back.K, clip.K)
    assert back.depth.tobytes() == clip.depth.tobytes() and back.instance_ids.tobytes() == clip.instance_ids.tobytes()
    assert back.object_names == clip.object_names and back.motion_labels == clip.motion_labels
    for name in clip.tracks:
        np.testing.assert_allclose(back.tracks[name], clip.tracks[name], atol=1e-6)
    assert sorted(back.headings) == sorted(clip.headings) != []
    for name in clip.headings:
        np.testing.assert_allclose(back.headings[name], clip.headings[name], atol=1e-6)
    assert back.frames.shape == clip.frames.shape
    assert np.abs(back.frames.astype(int) - clip.frames.astype(int)).mean() < 6  # H.264 is lossy
    assert back.camera_motion == clip.camera_motion
    poses = np.load(tmp_path / clip.clip_id / "poses.npy")
    intr = np.load(tmp_path / clip.clip_id / "intrinsics.npy")
    assert poses.shape == (8, 7) and intr.shape == (8, 4) and np.allclose(intr[:, 2:], 0.5)


def test_headings_must_have_one_value_per_frame(tmp_path):
    clip = render_clip(9, **SMALL)
    with pytest.raises(
        ValueError, match=r"headings must have one value per frame \(8,\), got \{'white ball': \(3,\)\}"
    ):
        dataclasses.replace(clip, headings={"white ball": np.zeros(3)})
    folder = save_clip(clip, tmp_path / "c", video=False)
    tracks = json.loads((folder / "tracks.json").read_text())
    tracks["objects"][[o["name"] for o in tracks["objects"]].index("white ball")]["headings"] = [0.0, 1.0]
    (folder / "tracks.json").write_text(json.dumps(tracks))
    write_video(folder / "video.mp4", clip.frames, clip.fps)
    with pytest.raises(ValueError, match=r"tracks.json: headings of \['white ball'\] do not have 8 entries"):
        load_clip(folder)


def _csr(mask):
    rows = [np.nonzero(r)[0] for r in mask]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    return np.ones(indptr[-1], np.uint8), np.concatenate(rows).astype(np.int32), indptr


def test_spatialvid_annotation_folder_loads_through_load_clip(tmp_path):
    src = render_clip(13, num_frames=12, size=64)
    annotated = np.arange(0, 12, 3)  # SpatialVID annotates every `interval`-th frame
    ann = tmp_path / "SpatialVID" / "annotations" / "group_0001" / "abc123"
    ann.mkdir(parents=True)
    (tmp_path / "SpatialVID" / "videos" / "group_0001").mkdir(parents=True)
    write_video(tmp_path / "SpatialVID" / "videos" / "group_0001" / "abc123.mp4", src.frames, 15.0)
    np.save(ann / "poses.npy", matrix_to_pose(src.w2c[annotated]))
    K = src.K
    np.save(ann / "intrinsics.npy", np.tile([K[0, 0] / 64, K[1, 1] / 64, 0.5, 0.5], (len(annotated), 1)))
    (ann / "indexes.txt").write_text("".join(f"{i} {f}\n" for i, f in enumerate(annotated)))
    (ann / "instructions.json").write_text(json.dumps({"0->3": ["Pan Left"]}))
    dyn = src.instance_ids[annotated] > 0
    arrays = {"shape": np.array(dyn.shape)}
    for i, m in enumerate(dyn):
        arrays[f"f_{i}_data"], arrays[f"f_{i}_indices"], arrays[f"f_{i}_indptr"] = _csr(m)
    np.savez(ann / "dyn_masks.npz", **arrays)

    clip = load_clip(ann)
    assert clip.meta["source"] == "spatialvid" and clip.clip_id == "abc123"
    assert clip.frames.shape == (4, 64, 64, 3) and clip.fps == pytest.approx(5.0)
    assert list(clip.frame_indices) == list(annotated)
    assert np.abs(clip.frames.astype(int) - src.frames[annotated].astype(int)).mean() < 6
    np.testing.assert_allclose(clip.w2c, src.w2c[annotated], atol=1e-9)
    np.testing.assert_allclose(clip.K, src.K)
    assert clip.object_names == ["dynamic"] and (clip.masks["dynamic"] == dyn).all()
    assert clip.depth is None and clip.camera_motion == "Pan Left"
    assert ask(clip, "camera_motion", rng=0)["answer_text"] == "Pan Left"
    assert ask(clip, "object_speed", rng=0) is None  # no tracks: no guessed label

    (tmp_path / "SpatialVID" / "videos" / "group_0001" / "abc123.mp4").unlink()
    with pytest.raises(FileNotFoundError, match="No video for SpatialVID clip.*pass video="):
        load_clip(ann)
    with pytest.raises(FileNotFoundError, match="is not a clip folder"):
        load_clip(tmp_path)


def _audio_only_mp4(path):
    import av

    with av.open(str(path), "w", format="mp4") as c:
        stream = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            c.mux(packet)


def test_world_folder_missing_files_and_streamless_video_are_named(tmp_path):
    clip = render_clip(2, **SMALL)
    for name in ("masks.npz", "indexes.txt", "tracks.json"):
        folder = save_clip(clip, tmp_path / name)
        (folder / name).unlink()
        with pytest.raises(FileNotFoundError, match=f"{name}: missing {name}; a thinker4d world clip folder needs"):
            load_clip(folder)
    folder = save_clip(clip, tmp_path / "audio")
    _audio_only_mp4(folder / "video.mp4")
    with pytest.raises(ValueError, match="video.mp4 has no video stream .*re-encode it with a video track"):
        load_clip(folder)
    folder = save_clip(clip, tmp_path / "small-masks")
    np.savez_compressed(folder / "masks.npz", instance_ids=np.zeros((8, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="masks.npz: instance_ids must be \\(8, 64, 64\\)"):
        load_clip(folder)


def test_load_clip_samples_and_scales_while_decoding(tmp_path):
    clip = render_clip(6, num_frames=8, size=128)
    folder = save_clip(clip, tmp_path / "c")
    sub = load_clip(folder, max_size=64, sample=lambda n, fps: np.arange(0, n, 2))
    assert sub.frames.shape == (4, 64, 64, 3) and sub.instance_ids.shape == sub.depth.shape == (4, 64, 64)
    assert sub.fps == pytest.approx(clip.fps / 2) and list(sub.frame_indices) == [0, 2, 4, 6]
    np.testing.assert_allclose(sub.w2c, clip.w2c[::2], atol=1e-9)
    np.testing.assert_allclose(sub.K[:2], clip.K[:2] / 2)  # the same camera at half the pixels
    assert np.array_equal(sub.instance_ids, clip.instance_ids[::2, ::2, ::2])  # nearest neighbour
    assert sub.camera_motion == clip.camera_motion
    for name in clip.tracks:
        np.testing.assert_allclose(sub.tracks[name], clip.tracks[name][::2], atol=1e-6)
    small = render_clip(6, num_frames=8, size=64).frames[::2]
    assert np.abs(sub.frames.astype(int) - small.astype(int)).mean() < 12  # area-downscaled ~ rendered small


# ------------------------------------------------------------------------------------------------ questions


def test_questions_are_consistent_with_geometry():
    seen = set()
    for seed in range(12):
        clip = render_clip(seed, **SMALL)
        for q in generate_questions(clip, seed=seed):
            seen.add(q["task"])
            assert q["options"]["ABCDEFGH".index(q["answer"])] == q["answer_text"]
            assert len(set(q["options"])) == len(q["options"]) and q["label_source"] == "geometry"
            lab = q["label"]
            if q["task"] == "camera_motion":
                assert lab["camera_motion"] == clip.camera_motion
            elif q["task"] == "object_direction":
                d = {"Right": lab["lateral_m"], "Left": -lab["lateral_m"]}
                d.update({"Away from the camera": lab["forward_m"], "Toward the camera": -lab["forward_m"]})
                assert d[q["answer_text"]] > 0
            elif q["task"] == "object_distance":
                assert (lab["end_m"] < lab["start_m"]) == (q["answer_text"] == "Closer") or q[
                    "answer_text"
                ].startswith("About")
            elif q["task"] == "object_speed":
                assert (lab["speed_m_s"] > 1.0) == q["answer_text"].startswith("Quickly")
            elif q["task"] == "object_bbox":
                m = clip.masks[lab["object"]][lab["frame"]]
                v, u = np.nonzero(m)
                assert lab["bbox_px"] == [u.min(), v.min(), u.max() + 1, v.max() + 1]
    assert seen == set(QUESTION_TASKS)


def test_ask_places_answer_and_rejects_unknown_task():
    clip = render_clip(5, camera_motion="Roll CW", **SMALL)
    for k in range(4):
        q = ask(clip, "camera_motion", rng=1, answer_index=k)
        assert q["answer"] == "ABCD"[k] and q["answer_text"] == "Roll CW" and "Roll CCW" in q["options"]
    with pytest.raises(ValueError, match="Unknown question task 'colour'.*camera_motion"):
        ask(clip, "colour")


# ------------------------------------------------------------------------------------------------ SynthDSR and CLI


def test_build_synthdsr_writes_loadable_balanced_held_out_rows(tmp_path):
    import datasets

    ds = build_synthdsr(tmp_path / "sd", num_questions=18, num_frames=8, size=32, progress=False)
    loaded = datasets.load_dataset(str(tmp_path / "sd"), cache_dir=str(tmp_path / "cache"))["test"]
    assert loaded.column_names == [
        "id",
        "clip_id",
        "frames",
        "fps",
        "task",
        "question",
        "options",
        "answer",
        "label_source",
        "meta",
    ]
    assert len(loaded) == 18 and len(set(loaded["id"])) == 18
    assert sorted(set(loaded["task"])) == sorted(QUESTION_TASKS)
    for row in loaded:
        meta = json.loads(row["meta"])
        assert meta["clip_seed"] >= SYNTHDSR_SEED_START and row["label_source"] == "geometry"
        assert row["options"][0].startswith("A. ") and len(row["frames"]) == 8
        assert row["options"]["ABCDEFGH".index(row["answer"])].endswith(meta["answer_text"])
    # within a task the correct letter cycles, so each task uses distinct letters for its 2 questions
    for task in QUESTION_TASKS:
        letters = [a for a, t in zip(ds["answer"], ds["task"]) if t == task]
        assert len(set(letters)) == len(letters)
    with pytest.raises(ValueError, match="Unknown SynthDSR tasks"):
        build_synthdsr(tmp_path / "bad", num_questions=2, tasks=["nope"], progress=False)


def test_cli_world_renders_clips(tmp_path):
    from thinker4d.commands.world import main

    assert (
        main(["--output_dir", str(tmp_path), "--num-clips", "2", "--size", "32", "--num-frames", "4", "--questions"])
        == 0
    )
    folders = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name for p in folders] == ["world-0000000", "world-0000001"]
    clip = load_clip(folders[1])
    assert clip.frames.shape == (4, 32, 32, 3)
    assert isinstance(json.loads((folders[0] / "questions.json").read_text()), list)
    assert Path(folders[0] / "video.mp4").stat().st_size > 0


def test_restricted_camera_motion_vocabulary():
    from thinker4d.world import ask, render_clip

    vocab = ["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"]
    seen = set()
    for seed in range(8):
        clip = render_clip(seed, num_frames=8, size=56, camera_motions=vocab)
        assert clip.camera_motion in vocab  # recovered from the poses
        seen.add(clip.camera_motion)
        q = ask(clip, "camera_motion", rng=seed, camera_motions=vocab)
        assert sorted(q["options"]) == sorted(vocab)
        assert q["options"][ord(q["answer"]) - 65] == clip.camera_motion
    assert len(seen) >= 3
    # a clip outside the vocabulary gets no camera question rather than an unfair one
    assert (
        ask(
            render_clip(0, num_frames=8, size=56, camera_motion="Dolly In"),
            "camera_motion",
            rng=0,
            camera_motions=vocab,
        )
        is None
    )
    with pytest.raises(ValueError, match="at least 4 distinct classes"):
        ask(clip, "camera_motion", rng=0, camera_motions=["Pan Left", "Pan Right"])


def test_synthdsr_refuses_tasks_the_clips_cannot_support_before_rendering(tmp_path, monkeypatch):
    """object_motion_state's stop/start classes need MIN_STATE_INTERVALS moving and as many still frame intervals, so
    4-frame clips never get that question: the build is refused at once instead of failing after thousands of clips."""
    import thinker4d.world.synthdsr as synthdsr
    from thinker4d.commands.synthdsr import main
    from thinker4d.world.questions import MIN_STATE_INTERVALS, task_min_frames

    need = task_min_frames("object_motion_state")
    assert need == 2 * MIN_STATE_INTERVALS + 1
    assert task_min_frames("object_bbox") == 1 and task_min_frames("object_speed") == 2
    rendered = []
    monkeypatch.setattr(synthdsr, "render_spec", lambda spec: rendered.append(spec) or render_spec(spec))
    with pytest.raises(
        ValueError,
        match=f"object_motion_state \\(needs >= {need} frames\\) on 4-frame clips.*"
        f"--num-frames {need}.*--tasks camera_motion",
    ):
        build_synthdsr(tmp_path / "sd", num_questions=400, size=32, num_frames=4, progress=False)
    assert rendered == [] and not (tmp_path / "sd").exists()
    with pytest.raises(SystemExit) as exc:
        main(["--output_dir", str(tmp_path / "cli"), "--num-questions", "400", "--size", "32", "--num-frames", "4"])
    assert exc.value.code == 2
    # the generator's own threshold: below it no clip has the question, at it the clips do
    short = [render_clip(s, num_frames=need - 1, size=64) for s in range(10)]
    assert all(ask(c, "object_motion_state", rng=0) is None for c in short)
    enough = [render_clip(s, num_frames=need, size=64) for s in range(10)]
    assert sum(ask(c, "object_motion_state", rng=0) is not None for c in enough) >= 5
    # without the task, 4-frame clips are fine
    tasks = [t for t in QUESTION_TASKS if t != "object_motion_state"]
    ds = build_synthdsr(tmp_path / "ok", num_questions=8, size=32, num_frames=4, tasks=tasks, progress=False)
    assert len(ds) == 8
