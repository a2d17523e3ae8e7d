"""A vectorised numpy ray caster for the synthetic world (https://huggingface.co/papers/2605.05997).

One ray per pixel, all frames at once for the ground plane and the sky dome; objects (spheres, yawed boxes, vertical
cylinders) are intersected only inside the screen rectangle of their bounding sphere. The nearest hit wins, so
occlusion, depth and instance ids are exact. Not in the paper (it uses real SpatialVID videos).
"""

from __future__ import annotations

import numpy as np

from .camera import camera_motion_labels
from .clip import Clip
from .scene import COLORS, ClipSpec, sample_clip_spec


SKY_RADIUS = 60.0
LIGHT_DIR = np.array([0.62, -0.25, 0.74]) / np.linalg.norm([0.62, -0.25, 0.74])  # from the east (right) and above
AMBIENT, DIFFUSE = 0.42, 0.62
HORIZON = np.array([0.80, 0.87, 0.93], dtype=np.float32)
ZENITH = np.array([0.30, 0.50, 0.88], dtype=np.float32)
GROUND_A = np.array([0.52, 0.46, 0.34], dtype=np.float32)
GROUND_B = np.array([0.40, 0.36, 0.27], dtype=np.float32)
RAMP = 0.22  # "redder towards the east" amplitude (learnability cue)
FOG_DISTANCE = 30.0
SHADOW = 0.55  # ground brightness inside an object's shadow
NEAR = 1e-3
MARKER_DEG = 35.0  # half-angle of the front wedge painted on a facing object


def intrinsics_matrix(width: int, height: int, fov_deg: float) -> np.ndarray:
    """(3,3) pinhole intrinsics with square pixels and the principal point at the image centre."""
    f = (width / 2) / np.tan(np.deg2rad(fov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)


def _value_noise(rng_seed: int, x: np.ndarray, y: np.ndarray, n: int = 32) -> np.ndarray:
    """Tileable bilinear value noise in [0, 1] at float32 coordinates (grid units); `n` is a power of two."""
    grid = np.random.default_rng(rng_seed).random(n * n).astype(np.float32)
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = x - x0
    fy = y - y0
    xi = x0.astype(np.int32) & (n - 1)
    yi = (y0.astype(np.int32) & (n - 1)) * n
    xj = (xi + 1) & (n - 1)
    yj = (yi + n) & (n * n - 1)
    top = grid[yi + xi]
    top += (grid[yi + xj] - top) * fx
    bot = grid[yj + xi]
    bot += (grid[yj + xj] - bot) * fx
    top += (bot - top) * fy
    return top


def _sky_color(dx, dy, dz, seed: int) -> np.ndarray:
    """(3, N) colour of the sky dome seen along directions (dx, dy, dz) (any length)."""
    inv = 1.0 / np.sqrt(dx * dx + dy * dy + dz * dz)
    nx, ny, nz = dx * inv, dy * inv, dz * inv
    elev = np.clip(nz, 0.0, 1.0)
    w = np.sqrt(elev)
    horiz = np.sqrt(nx * nx + ny * ny) + 1e-6
    az = np.arctan2(nx, ny) * np.float32(16 / np.pi)
    clouds = _value_noise(seed + 1, az + 64.0, elev * 10.0 + 3.0)
    c = np.clip((clouds - 0.55) * 3.0, 0.0, 0.7) * (elev > 0.02)
    out = np.empty((3, len(dx)), dtype=np.float32)
    for k in range(3):
        col = HORIZON[k] + (ZENITH[k] - HORIZON[k]) * w
        if k == 0:
            col += RAMP * nx / horiz * (1 - 0.5 * w)
        out[k] = col + (1 - col) * c
    return out


def _ground_color(px, py, dist, seed: int, tint: np.ndarray) -> np.ndarray:
    """(3, N) textured ground colour at world points (px, py, 0) seen from `dist` metres."""
    checker = ((np.floor(px).astype(np.int32) + np.floor(py).astype(np.int32)) & 1).astype(np.float32)
    noise = _value_noise(seed, px * np.float32(0.7), py * np.float32(0.7))
    light = (0.8 + 0.4 * noise) * np.float32(AMBIENT + DIFFUSE * LIGHT_DIR[2])
    fog = 1 - np.exp(-dist / np.float32(FOG_DISTANCE))
    out = np.empty((3, len(px)), dtype=np.float32)
    for k in range(3):
        col = (GROUND_A[k] + tint[k] + (GROUND_B[k] - GROUND_A[k]) * checker) * light
        if k == 0:
            col += RAMP * np.clip(px / np.float32(15.0), -1, 1) * np.float32(AMBIENT + DIFFUSE * LIGHT_DIR[2])
        out[k] = col + (HORIZON[k] - col) * fog
    return out


def _intersect(shape: str, center, size, yaw, o, d):
    """Ray parameter t (N,) (inf on a miss) and unit normals (N,3) for rays o + t d."""
    c = np.asarray(center, dtype=np.float32)
    oc = (o - c).astype(np.float32)
    n = d.shape[0]
    if shape == "ball":
        r = size[0] / 2
        a = np.einsum("ij,ij->i", d, d)
        b = d @ oc
        disc = b * b - a * (oc @ oc - r * r)
        hit = disc > 0
        t = np.where(hit, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
        t = np.where(t > NEAR, t, np.inf)
        normal = (oc[None] + np.where(np.isfinite(t), t, 0)[:, None] * d) / r  # a miss times a 0 component: nan
        return t, normal
    if shape == "cube":
        cy, sy = np.cos(np.deg2rad(yaw)), np.sin(np.deg2rad(yaw))
        rot = np.array([[cy, sy, 0], [-sy, cy, 0], [0, 0, 1]], dtype=np.float32)  # world -> local
        ol = rot @ oc
        dl = d @ rot.T
        dl = np.where(np.abs(dl) < 1e-9, 1e-9, dl)
        inv = 1.0 / dl
        h = np.asarray(size, dtype=np.float32) / 2
        t1 = (-h - ol) * inv
        t2 = (h - ol) * inv
        tmin3 = np.minimum(t1, t2)
        tmin = tmin3.max(axis=1)
        tmax = np.maximum(t1, t2).min(axis=1)
        t = np.where((tmax >= tmin) & (tmin > NEAR), tmin, np.inf)
        axis = tmin3.argmax(axis=1)
        nl = np.zeros((n, 3), dtype=np.float32)
        nl[np.arange(n), axis] = -np.sign(dl[np.arange(n), axis])
        return t, nl @ rot  # local -> world is rot.T, applied to row vectors
    if shape == "cylinder":
        r, hh = size[0] / 2, size[2] / 2
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = d[:, 0] * oc[0] + d[:, 1] * oc[1]
        cc = oc[0] ** 2 + oc[1] ** 2 - r * r
        disc = b * b - a * cc
        ts = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / np.maximum(a, 1e-12), np.inf)
        zs = oc[2] + np.where(np.isfinite(ts), ts, 0) * d[:, 2]  # a miss stays one: ts is inf there
        ts = np.where((np.abs(zs) <= hh) & (ts > NEAR), ts, np.inf)
        dz = np.where(np.abs(d[:, 2]) < 1e-9, 1e-9, d[:, 2])
        cap_z = np.where(oc[2] > 0, hh, -hh).astype(np.float32)
        tc = (cap_z - oc[2]) / dz
        xc = oc[0] + tc * d[:, 0]
        yc = oc[1] + tc * d[:, 1]
        tc = np.where((xc * xc + yc * yc <= r * r) & (tc > NEAR), tc, np.inf)
        side = ts < tc
        t = np.minimum(ts, tc)
        p = oc[None] + np.where(np.isfinite(t), t, 0)[:, None] * d
        normal = np.where(side[:, None], p * np.array([1, 1, 0], np.float32) / r, np.array([0, 0, 1], np.float32))
        normal[~side, 2] = np.sign(cap_z)
        return t, normal
    raise ValueError(f"Unknown shape {shape!r}; expected one of 'cube', 'ball', 'cylinder'.")


def _screen_rect(center, radius, R, o, K, width, height):
    """Conservative pixel rectangle (v0, v1, u0, u1) of a bounding sphere, or None when it is behind the camera."""
    pc = R.T @ (np.asarray(center) - o)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if pc[2] + radius <= NEAR:
        return None
    if pc[2] - radius <= 0.05:
        return 0, height, 0, width
    zs = (pc[2] - radius, pc[2] + radius)
    xs = [(pc[0] + s * radius) / z for s in (-1, 1) for z in zs]
    ys = [(pc[1] + s * radius) / z for s in (-1, 1) for z in zs]
    u0, u1 = int(np.floor(cx + fx * min(xs))), int(np.ceil(cx + fx * max(xs))) + 1
    v0, v1 = int(np.floor(cy + fy * min(ys))), int(np.ceil(cy + fy * max(ys))) + 1
    u0, u1, v0, v1 = max(u0, 0), min(u1, width), max(v0, 0), min(v1, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _shadow_factor(objects, centers, px, py) -> np.ndarray:
    """1 where a ground point (px, py, 0) sees the sun, SHADOW where an object's blob shadow covers it."""
    lit = np.ones(len(px), dtype=np.float32)
    L = LIGHT_DIR
    for obj, c in zip(objects, centers):
        # blob shadow: the shadow of a sphere with the object's half width (exact for balls)
        r = 0.5 * min(obj.size[0], obj.size[1])
        far = np.asarray(c) - L * (c[2] / L[2])  # where the centre's shadow falls on the ground
        lo = np.minimum(c[:2], far[:2]) - r / L[2]
        hi = np.maximum(c[:2], far[:2]) + r / L[2]
        near = np.flatnonzero((px > lo[0]) & (px < hi[0]) & (py > lo[1]) & (py < hi[1]))
        if not len(near):
            continue
        ox, oy, oz = px[near] - c[0], py[near] - c[1], -c[2]
        s = np.maximum(-(ox * L[0] + oy * L[1] + oz * L[2]), 0.0)
        qx, qy, qz = ox + s * L[0], oy + s * L[1], oz + s * L[2]
        blocked = qx * qx + qy * qy + qz * qz < r * r
        lit[near[blocked]] = SHADOW
    return lit


def _front_wedge(offsets: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Which surface points (offsets from the object's centre, (N,3) world) lie in the vertical wedge of `MARKER_DEG`
    either side of the heading: the painted front of a facing object."""
    front = np.array([np.cos(np.deg2rad(yaw_deg)), np.sin(np.deg2rad(yaw_deg))], np.float32)
    flat = offsets[:, :2]
    return flat @ front > np.cos(np.deg2rad(MARKER_DEG)) * np.linalg.norm(flat, axis=1)


def _marker_color(color: str) -> np.ndarray:
    """Near-white on dark colours, near-black on light ones, so the front stands out on every object."""
    rgb = np.asarray(COLORS[color], np.float32)
    return np.full(3, 0.08 if rgb @ np.array([0.3, 0.59, 0.11], np.float32) > 0.6 else 0.97, np.float32)


def render_spec(spec: ClipSpec) -> Clip:
    """Render a `ClipSpec` into a `Clip` with frames, z-depth (metres), instance ids, poses and object tracks."""
    T, H, W = spec.num_frames, spec.height, spec.width
    K = intrinsics_matrix(W, H, spec.camera.fov_deg)
    c2w = spec.camera.c2w(T)
    w2c = np.linalg.inv(c2w)
    times = spec.times
    tracks = np.stack([o.track(times) for o in spec.objects], axis=1) if spec.objects else np.zeros((T, 0, 3))
    headings = {o_.name: o_.heading(times) for o_ in spec.objects}

    u = (np.arange(W, dtype=np.float32) + 0.5 - np.float32(K[0, 2])) / np.float32(K[0, 0])
    v = (np.arange(H, dtype=np.float32) + 0.5 - np.float32(K[1, 2])) / np.float32(K[1, 1])
    dcam = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1), np.float32)), axis=-1)  # (H,W,3)
    U, V = np.tile(u, H), np.repeat(v, W)
    R = c2w[:, :3, :3].astype(np.float32)
    o = c2w[:, :3, 3].astype(np.float32)
    # world ray directions (T, HW) per component, with unit camera z, so the ray parameter t is the z-depth
    dx, dy, dz = (R[:, k, 0, None] * U + R[:, k, 1, None] * V + R[:, k, 2, None] for k in range(3))
    down = dz < -1e-7  # only rays going down meet the ground plane
    t_ground = np.full_like(dz, np.inf)
    np.divide(-o[:, 2, None], dz, out=t_ground, where=down)
    # the hit point of the other rays is never used; t = 0 there, since inf * 0 (a ray with dx or dy exactly 0) is nan
    t_hit = np.where(down, t_ground, np.float32(0))
    gx = o[:, 0, None] + t_hit * dx
    gy = o[:, 1, None] + t_hit * dy
    ground = (down & (gx * gx + gy * gy < np.float32(SKY_RADIUS**2))).ravel()  # the ground hit lies inside the dome
    depth = t_ground.ravel()
    si = np.flatnonzero(~ground)
    frame_sky = si // (H * W)
    sx, sy, sz = dx.ravel()[si], dy.ravel()[si], dz.ravel()[si]
    a_s = sx * sx + sy * sy + sz * sz
    b_s = sx * o[frame_sky, 0] + sy * o[frame_sky, 1] + sz * o[frame_sky, 2]
    c_s = (o * o).sum(axis=1)[frame_sky] - np.float32(SKY_RADIUS**2)
    depth[si] = (np.sqrt(b_s * b_s - a_s * c_s) - b_s) / a_s  # far root of |o + t d| = SKY_RADIUS (camera inside)

    image = np.empty((3, T * H * W), dtype=np.float32)
    gi = np.flatnonzero(ground)
    frame_of = gi // (H * W)
    px, py = gx.ravel()[gi], gy.ravel()[gi]
    dist = np.sqrt((px - o[frame_of, 0]) ** 2 + (py - o[frame_of, 1]) ** 2 + o[frame_of, 2] ** 2)
    gcol = _ground_color(px, py, dist, spec.texture_seed, np.asarray(spec.ground_tint, np.float32))
    if spec.objects:
        bounds = np.searchsorted(gi, np.arange(T + 1) * (H * W))
        for ti in range(T):
            sel = slice(bounds[ti], bounds[ti + 1])
            gcol[:, sel] *= _shadow_factor(spec.objects, tracks[ti], px[sel], py[sel])
    image[:, gi] = gcol
    image[:, si] = _sky_color(sx, sy, sz, spec.texture_seed)

    depth = depth.reshape(T, H, W)
    image = image.reshape(3, T, H, W)
    ids = np.zeros((T, H, W), dtype=np.uint8)
    for ti in range(T):
        for j, obj in enumerate(spec.objects):
            rect = _screen_rect(tracks[ti, j], obj.radius, c2w[ti, :3, :3], c2w[ti, :3, 3], K, W, H)
            if rect is None:
                continue
            v0, v1, u0, u1 = rect
            dd = dcam[v0:v1, u0:u1].reshape(-1, 3) @ R[ti].T
            yaw = headings[obj.name][ti]
            t, normal = _intersect(obj.shape, tracks[ti, j], obj.size, yaw, o[ti], dd)
            t = t.reshape(v1 - v0, u1 - u0)
            win = t < depth[ti, v0:v1, u0:u1]
            if not win.any():
                continue
            shade = AMBIENT + DIFFUSE * np.clip(normal.reshape(v1 - v0, u1 - u0, 3)[win] @ LIGHT_DIR, 0, None)
            depth[ti, v0:v1, u0:u1][win] = t[win]
            ids[ti, v0:v1, u0:u1][win] = j + 1
            col = np.repeat(np.asarray(COLORS[obj.color], np.float32)[:, None], len(shade), axis=1)
            if obj.facing:
                hit = o[ti] + t[win][:, None] * dd.reshape(v1 - v0, u1 - u0, 3)[win] - tracks[ti, j]
                col[:, _front_wedge(hit, yaw)] = _marker_color(obj.color)[:, None]
            image[:, ti, v0:v1, u0:u1][:, win] = col * shade[None]

    frames = np.ascontiguousarray(np.moveaxis((np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), 0, -1))
    labels = camera_motion_labels(w2c)
    objects = [
        {
            "name": o_.name,
            "shape": o_.shape,
            "color": o_.color,
            "size": list(o_.size),
            "moving": o_.moving,
            "facing": o_.facing,
        }
        for o_ in spec.objects
    ]
    return Clip(
        clip_id=spec.clip_id,
        frames=frames,
        fps=float(spec.fps),
        K=K,
        w2c=w2c,
        depth=depth,
        instance_ids=ids,
        object_names=[o_.name for o_ in spec.objects],
        objects=objects,
        tracks={o_.name: tracks[:, j].copy() for j, o_ in enumerate(spec.objects)},
        headings={o_.name: headings[o_.name] for o_ in spec.objects if o_.facing},
        motion_labels={f"0->{T - 1}": labels},
        frame_indices=np.arange(T, dtype=np.int64),
        meta={
            "source": "synthetic",
            "seed": spec.seed,
            "split": spec.split,
            "depth_kind": "z-depth metres",
            "spec": spec.to_dict(),
        },
    )


def render_clip(seed_or_spec: int | ClipSpec, **sample_kwargs) -> Clip:
    """Render one clip from a seed (via `sample_clip_spec(seed, **sample_kwargs)`) or from a `ClipSpec`.

    Example:

    ```python
    >>> from thinker4d.world import render_clip
    >>> clip = render_clip(0, num_frames=4, size=64, camera_motion="Pan Left")
    >>> clip.camera_motion
    'Pan Left'
    ```
    """
    if isinstance(seed_or_spec, ClipSpec):
        if sample_kwargs:
            raise ValueError(f"Pass sampling options only with a seed, not with a ClipSpec: {sorted(sample_kwargs)}.")
        return render_spec(seed_or_spec)
    return render_spec(sample_clip_spec(seed_or_spec, **sample_kwargs))
