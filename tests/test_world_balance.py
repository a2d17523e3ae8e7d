"""SynthDSR answer balance and the DSR-Bench-style object tasks, each on a constructed scene with a known answer."""

import dataclasses
import json

import numpy as np
import pytest

from thinker4d.world import CameraSpec, ClipSpec, ObjectSpec, answer_balance, ask, build_synthdsr, render_spec
from thinker4d.world.orientation_questions import ORIENTATIONS
from thinker4d.world.questions import QUESTION_TASKS, TASK_FUNCTIONS, answer_class, task_min_frames
from thinker4d.world.synthdsr import BALANCE_TOLERANCE, QUESTIONS_PER_TASK, balanced_questions


QUICKSTART_WORLD = ["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"]


def scene(*objects, motion=(), magnitudes=None, num_frames=8, fps=4.0):
    """A 64x64 clip: the camera at (0, -6, 1.5) looking north (+Y), +X to its right; `objects` as ObjectSpecs."""
    camera = CameraSpec(motion=tuple(motion), magnitudes=dict(magnitudes or {}), heading_deg=0.0, pitch_deg=-8.0)
    spec = ClipSpec(seed=0, num_frames=num_frames, height=64, width=64, fps=fps, camera=camera, objects=list(objects))
    return render_spec(spec)


def ball(position=(0.0, 0.0, 0.4), velocity=(0.0, 0.0, 0.0), start=0.0, end=10.0, color="red"):
    return ObjectSpec(
        name=f"{color} ball",
        shape="ball",
        color=color,
        size=(0.8, 0.8, 0.8),
        position=position,
        velocity=velocity,
        move_start=start,
        move_end=end if any(velocity) else 0.0,
    )


def facing_ball(turn_deg=0.0, facing_deg=0.0, position=(0.0, 0.0, 0.4), span_s=1.75, facing=True):
    """A red ball with a painted front that turns `turn_deg` (counter-clockwise seen from above) over `span_s` seconds
    (the default scene's 8 frames at 4 fps), its front `facing_deg` from the camera (0 = facing it) at mid-clip."""
    bearing = np.degrees(np.arctan2(-6.0 - position[1], -position[0]))  # from the ball to the camera at (0, -6)
    return dataclasses.replace(
        ball(position=position),
        facing=facing,
        yaw_deg=bearing + facing_deg - turn_deg / 2,
        turn_deg_s=turn_deg / span_s,
    )


def answer(clip, task):
    q = ask(clip, task, rng=0)
    return None if q is None else q["answer_text"]


# ------------------------------------------------------------------------------------------------ new tasks


def test_direction_in_the_camera_frame_includes_the_camera_motion():
    still = ball()
    # the camera trucks right past a still object: in the camera's frame the object moves left; in the world it does
    # not move, so the world-frame question has nothing to ask
    trucking = scene(still, motion=["Truck Right"], magnitudes={"Truck Right": 2.0})
    assert answer(trucking, "object_direction_camera") == "Left"
    assert answer(trucking, "object_direction") is None
    assert answer(scene(still, motion=["Dolly In"], magnitudes={"Dolly In": 2.0}), "object_direction_camera") == (
        "Toward the camera"
    )
    assert answer(scene(ball(velocity=(1.0, 0.0, 0.0))), "object_direction_camera") == "Right"
    assert answer(scene(ball(velocity=(0.0, 1.0, 0.0))), "object_direction_camera") == "Away from the camera"
    # a camera that pedestals up moves a still object down in its frame: not one of the options, so not asked
    assert (
        answer(scene(still, motion=["Pedestal Up"], magnitudes={"Pedestal Up": 2.0}), "object_direction_camera")
        is None
    )
    # the object moves right in the world while the camera trucks right faster: it drifts left in the view
    both = scene(ball(velocity=(0.3, 0.0, 0.0)), motion=["Truck Right"], magnitudes={"Truck Right": 2.5})
    assert answer(both, "object_direction") == "Right" and answer(both, "object_direction_camera") == "Left"


def test_distance_change_amount_in_metres():
    q = ask(scene(ball(velocity=(0.0, 1.5, 0.0))), "object_distance_change", rng=0)  # 1.5 m/s * 7 intervals / 4 fps
    expected = np.hypot(6 + 2.625, 1.5 - 0.4) - np.hypot(6, 1.5 - 0.4)  # camera centre to ball centre
    assert q["answer_text"] == "More than 1.8 m" and q["label"]["change_m"] == pytest.approx(expected, abs=1e-3)
    assert answer(scene(ball()), "object_distance_change") == "Less than 0.3 m"
    dolly = scene(ball(), motion=["Dolly In"], magnitudes={"Dolly In": 0.9})  # the camera closes 0.9 m along its axis
    assert answer(dolly, "object_distance_change") == "Between 0.6 m and 1.2 m"
    # 1.4 m lies between the bands: no question rather than a guess
    assert answer(scene(ball(velocity=(0.0, 0.8, 0.0))), "object_distance_change") is None


def test_direction_prediction_extrapolates_the_end_velocity():
    assert answer(scene(ball(velocity=(0.8, 0.0, 0.0))), "object_direction_prediction") == "Further to the right"
    assert answer(scene(ball(velocity=(0.0, -0.8, 0.0))), "object_direction_prediction") == "Closer to the camera"
    assert answer(scene(ball(velocity=(0.0, 0.8, 0.0))), "object_direction_prediction") == "Farther from the camera"
    stops = ball(velocity=(0.8, 0.0, 0.0), start=0.0, end=1.0)  # moves right, then stands still for the last second
    assert answer(scene(stops), "object_direction_prediction") == "Where it is now (it is not moving at the end)"
    starts = ball(velocity=(-0.8, 0.0, 0.0), start=1.0, end=10.0)  # still, then moves left
    q = ask(scene(starts), "object_direction_prediction", rng=0)
    assert q["answer_text"] == "Further to the left" and q["label"]["velocity_m_s"][0] == pytest.approx(-0.8)
    # it stops at 1.5 s, one frame before the end (frames every 0.25 s up to 1.75 s): moving over the second-last
    # interval, still over the last one, so the end state is not clear and there is no question
    assert answer(scene(ball(velocity=(0.8, 0.0, 0.0), end=1.5)), "object_direction_prediction") is None
    assert task_min_frames("object_direction_prediction") == 3
    assert ask(scene(ball(velocity=(0.8, 0.0, 0.0)), num_frames=2), "object_direction_prediction", rng=0) is None


def test_every_task_declares_frames_and_answer_classes_that_its_questions_use():
    from thinker4d.world import render_clip

    for task in QUESTION_TASKS:
        assert TASK_FUNCTIONS[task].min_frames >= 1
    seen = {}
    for seed in range(10):
        clip = render_clip(seed, num_frames=16, size=64)
        for task in QUESTION_TASKS:
            q = ask(clip, task, rng=seed)
            if q is not None:
                seen.setdefault(task, set()).add(answer_class(q))
    for task, classes in seen.items():
        declared = TASK_FUNCTIONS[task].classes
        assert declared is None and classes == {None} or classes <= set(declared), task


def test_camera_single_class_questions_offer_stay_as_a_distractor():
    """Otherwise "Stay" would only ever be offered when it is the answer, and always picking it would beat chance."""
    from thinker4d.world import render_clip

    offered = 0
    for seed in range(30):
        q = ask(render_clip(seed, num_frames=4, size=32, camera_motion="Pan Left"), "camera_motion", rng=seed)
        assert q["answer_text"] == "Pan Left" and "Pan Right" in q["options"]
        offered += "Stay" in q["options"]
    assert 0 < offered < 30


def test_orientation_from_the_exact_heading_with_dead_bands():
    left, right, still = ORIENTATIONS
    assert task_min_frames("object_orientation") == 2 and TASK_FUNCTIONS["object_orientation"].classes == ORIENTATIONS
    q = ask(scene(facing_ball(60.0)), "object_orientation", rng=0)
    assert q["answer_text"] == left and q["label"]["turn_deg"] == pytest.approx(60.0)
    assert q["label"]["relative_turn_deg"] == pytest.approx(60.0)  # the camera stays: the line of sight is fixed
    assert answer(scene(facing_ball(-60.0)), "object_orientation") == right
    assert answer(scene(facing_ball(0.0)), "object_orientation") == still
    assert answer(scene(facing_ball(15.0)), "object_orientation") is None  # between "still" and "turned"
    assert answer(scene(facing_ball(170.0)), "object_orientation") is None  # near a half-turn: either way looks alike
    assert answer(scene(facing_ball(60.0, facing_deg=180.0)), "object_orientation") is None  # the front faces away
    assert answer(scene(facing_ball(60.0, facing=False)), "object_orientation") is None  # no front: nothing to see
    # the camera trucks 2.5 m right of a ball 6 m away: the line of sight turns 22.6 degrees, so a still ball looks
    # turned by that much relative to the camera, and a 30-degree turn by only 7: neither is asked; 60 degrees is
    truck = {"motion": ["Truck Right"], "magnitudes": {"Truck Right": 2.5}}
    assert answer(scene(facing_ball(0.0), **truck), "object_orientation") is None
    assert answer(scene(facing_ball(30.0), **truck), "object_orientation") is None
    q = ask(scene(facing_ball(60.0), **truck), "object_orientation", rng=0)
    assert q["answer_text"] == left and q["label"]["relative_turn_deg"] == pytest.approx(60.0 - 22.62, abs=0.01)
    # a camera that only pans does not move the line of sight
    assert answer(
        scene(facing_ball(0.0), motion=["Pan Left"], magnitudes={"Pan Left": 30.0}), "object_orientation"
    ) == (still)


def test_a_turn_is_visible_in_the_frames():
    """The painted front of a ball 3 m from the camera, facing it at mid-clip, slides across the ball: to the viewer's
    right for a left (counter-clockwise) turn, to the left for a right turn, nowhere without a turn."""

    def front_shift(turn_deg):
        clip = scene(facing_ball(turn_deg, position=(0.0, -3.0, 0.4)))
        xs = []
        for f in (0, clip.num_frames - 1):
            mask = clip.instance_ids[f] == 1
            front = mask & (clip.frames[f, :, :, 1] > 100)  # white paint on a red ball: a bright green channel
            assert 0 < front.sum() < mask.sum()
            xs.append(np.nonzero(front)[1].mean() - np.nonzero(mask)[1].mean())
        return xs[1] - xs[0]

    assert front_shift(80.0) > 2 and front_shift(-80.0) < -2 and abs(front_shift(0.0)) < 0.5


# ------------------------------------------------------------------------------------------------ balance


def test_answer_balance_on_a_known_case():
    qs = [
        {"task": "t", "options": ["Closer", "Farther", "Same"], "answer_text": "Same"},
        {"task": "t", "options": ["Same", "Closer", "Farther"], "answer_text": "Same"},
        {"task": "t", "options": ["Farther", "Closer", "Same"], "answer_text": "Closer"},
        {"task": "u", "options": ["x", "y"], "answer_text": "x"},
        {"task": "u", "options": ["z", "x", "y", "w"], "answer_text": "z"},
    ]
    b = answer_balance(qs)
    assert b["t"]["chance"] == pytest.approx(1 / 3, abs=1e-4) and b["t"]["majority_rate"] == pytest.approx(2 / 3, 1e-3)
    assert b["t"]["always"]["Same"] == pytest.approx(2 / 3, abs=1e-4) and b["t"]["always"]["Farther"] == 0
    assert b["t"]["letters"] == {"A": 0.3333, "B": 0.3333, "C": 0.3333} and b["u"]["letters"] == {"A": 1.0}
    # u: chance (1/2 + 1/4) / 2; "always z" is right on question 2 and guesses (1/2) on question 1, where z is absent
    assert b["u"]["chance"] == pytest.approx(0.375) and b["u"]["always"]["z"] == pytest.approx(0.75)
    assert b["u"]["always"]["x"] == pytest.approx((1 + 0) / 2)  # offered twice, right once


def _check_balanced(questions, tasks, min_offered=0):
    """Majority-answer rate, every "always answer X" rate (X offered at least `min_offered` times) and the share of
    each correct letter within BALANCE_TOLERANCE of chance, for every task."""
    balance = answer_balance(questions)
    assert sorted(balance) == sorted(tasks)
    offered = {}
    for q in questions:
        for o in q["options"]:
            offered[q["task"], o] = offered.get((q["task"], o), 0) + 1
    for task, b in balance.items():
        tol = BALANCE_TOLERANCE + 1e-9
        assert b["majority_rate"] <= b["chance"] + tol, (task, b["majority_rate"], b["chance"])
        always = {x: r for x, r in b["always"].items() if offered[task, x] >= min_offered}
        worst = max(always, key=always.get, default=None)  # object_bbox: every box differs
        assert worst is None or always[worst] <= b["chance"] + tol, (task, worst, always[worst], b["chance"])
        num_options = round(1 / b["chance"]) if task != "camera_motion" else 4
        for share in b["letters"].values():
            assert abs(share - 1 / num_options) <= tol, (task, b["letters"])
    return balance


def _balanced(**kw):
    stats = {}
    qs = [
        dict(q, **{"class": answer_class(q, kw.get("camera_motions"))})
        for _, q in balanced_questions(stats=stats, **kw)
    ]
    return qs, stats


def test_quickstart_synthdsr_is_balanced_per_task():
    """The quickstart's held-out set (its default tasks, world and size): answers balanced, each class's quota met."""
    from thinker4d.quickstart.config import QuickstartConfig

    cfg = QuickstartConfig()
    kw = dict(num_frames=cfg.num_frames, size=cfg.size, fps=cfg.fps, tasks=list(cfg.tasks))
    qs, stats = _balanced(num_questions=cfg.eval_questions, camera_motions=list(cfg.camera_motions), **kw)
    assert len(qs) == cfg.eval_questions
    _check_balanced(qs, cfg.tasks)
    for task in cfg.tasks:
        counts = stats["answers"][task]
        assert max(counts.values()) - min(counts.values()) <= 1, counts
        assert stats["examined"][task] >= stats["kept"][task] + stats["skipped"][task]
    # the unbalanced draw had far more "About the same distance" than the quota lets in
    assert stats["skipped"]["object_distance"] > 0


def test_all_tasks_balanced_on_a_smaller_build():
    """Every task at 40 questions. Object names occur as options of object_speed_compare only a few times each at this
    size, so their "always answer X" rates are left to the default-size test below (they are within bounds there)."""
    assert "object_orientation" in QUESTION_TASKS
    qs, stats = _balanced(num_questions=40 * len(QUESTION_TASKS), num_frames=16, size=64)
    balance = _check_balanced(qs, QUESTION_TASKS, min_offered=20)
    assert all(b["n"] == 40 for b in balance.values())


@pytest.mark.slow
def test_default_synthdsr_is_balanced_per_task():
    """The benchmark as `build_synthdsr` / `thinker4d synthdsr` make it by default (all tasks, seed 0, 16 frames of
    128x128, QUESTIONS_PER_TASK per task): every task within BALANCE_TOLERANCE of chance (a few minutes)."""
    qs, stats = _balanced()
    balance = _check_balanced(qs, QUESTION_TASKS)
    assert all(b["n"] == QUESTIONS_PER_TASK for b in balance.values())
    assert 1.96 * 0.5 / np.sqrt(QUESTIONS_PER_TASK) <= 0.06


def test_build_writes_counts_and_balance_to_the_card(tmp_path):
    tasks = ["object_distance", "object_speed_compare"]
    ds = build_synthdsr(tmp_path / "sd", num_questions=12, num_frames=8, size=32, tasks=tasks, progress=False)
    stats = json.loads((tmp_path / "sd" / "build_stats.json").read_text())
    assert stats["kept"] == {"object_distance": 6, "object_speed_compare": 6}
    assert stats["answers"]["object_distance"] == {"Closer": 2, "Farther": 2, "About the same distance": 2}
    assert stats["answers"]["object_speed_compare"] == {"first": 2, "second": 2, "same": 2}
    assert stats["clips"] >= 4 and stats["balance"]["object_distance"]["majority_rate"] == pytest.approx(1 / 3, 1e-3)
    card = (tmp_path / "sd" / "README.md").read_text()
    assert "| `object_distance` | 6 |" in card and f"over {stats['clips']} rendered clips" in card
    metas = [json.loads(m) for m in ds["meta"]]
    assert {m["answer_class"] for m in metas} == {
        "Closer",
        "Farther",
        "About the same distance",
        "first",
        "second",
        "same",
    }


def test_unfillable_class_is_a_clear_error(tmp_path):
    # a camera that only turns, and 2-frame clips at 8 fps (0.125 s): nothing gets 1.8 m closer or farther, so that
    # class of object_distance_change never fills
    kw = dict(num_frames=2, size=32, tasks=["object_distance_change"], camera_motions=QUICKSTART_WORLD)
    with pytest.raises(RuntimeError, match="More than 1.8 m.*--num-frames"):
        list(balanced_questions(num_questions=3, **kw))
