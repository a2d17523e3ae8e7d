"""The Gemini teacher: landmarks, labels and chains of thought from the Gemini API through google-genai
(https://huggingface.co/papers/2605.05997, §3.1 and Appendix A).

`GeminiTeacher` implements the teacher interface of `thinker4d.data.teacher` (`landmarks_many`, `labels_many`,
`cot_many`, `stats`) with structured JSON output (`responseSchema`; labels through an enum of the classes, so an
unknown class is a malformed response and is retried), async calls with bounded concurrency, its own retries with
exponential backoff and jitter (429, 5xx, timeouts, malformed JSON), an on-disk response cache keyed by the request,
and token and cost accounting. The API key comes from `GEMINI_API_KEY` / `GOOGLE_API_KEY` and is never logged or
written. To run it offline (tests, benchmarks, trying a config), point `base_url` at a
`thinker4d.testing.FakeGeminiServer`.

What differs from the paper (docs/paper_differences.md, section 10):

1. One model, no rotation between five model names on retries, no private gateway header; reruns hit the cache.
2. On synthetic clips the landmarks come from the geometry even with Gemini (`geometry_landmarks`); Gemini is asked
   only for clips without object geometry.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import threading
from collections import Counter
from pathlib import Path

import numpy as np

from .cot import COT_SCHEMA, assemble_cot, cot_prompt
from .questions import TEACHER_LABEL_CLASSES
from .teacher import (
    LANDMARK_PROMPT,
    LANDMARK_SCHEMA,
    NO_TEACHER_CLASSES,
    TeacherError,
    geometry_landmarks,
    has_object_geometry,
    label_prompt,
    label_schema,
)
from .writer import _atomic_write_bytes


def _schema_violation(data, schema: dict, path: str = "response") -> str | None:
    """The first value that breaks an `enum` of `schema` (recursively), or `None`."""
    enum = schema.get("enum")
    if enum is not None and data not in enum:
        return f"{path} = {data!r} is not one of {list(enum)}"
    if isinstance(data, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in data:
                bad = _schema_violation(data[name], sub, f"{path}.{name}")
                if bad:
                    return bad
    elif isinstance(data, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(data):
            bad = _schema_violation(item, schema["items"], f"{path}[{i}]")
            if bad:
                return bad
    return None


def _convert_schema(schema: dict, renames: dict, ordering: bool) -> dict:
    """`schema` with its keys renamed by `renames` at every level (`properties`, `items`) and, with `ordering`,
    `propertyOrdering` added where missing."""
    out = {}
    for k, v in schema.items():
        if k == "properties":
            v = {name: _convert_schema(sub, renames, ordering) for name, sub in v.items()}
        elif k == "items":
            v = _convert_schema(v, renames, ordering)
        out[renames.get(k, k)] = v
    if (
        ordering
        and schema.get("properties")
        and "propertyOrdering" not in schema
        and "property_ordering" not in schema
    ):
        out["propertyOrdering"] = list(schema["properties"])
    return out


def _to_sdk_schema(schema: dict) -> dict:
    """The OpenAPI-style dict (`minItems`) in the SDK's field names (`min_items`)."""
    return _convert_schema(schema, {"minItems": "min_items", "maxItems": "max_items"}, ordering=False)


def _wire_schema(schema: dict) -> dict:
    """The schema as the REST API takes it, with `propertyOrdering` (the SDK adds it too) so the model writes the
    properties in the order given (e.g. `reasoning` before `answer`) rather than alphabetically."""
    return _convert_schema(schema, {}, ordering=True)


def _env_proxy(url: str) -> tuple:
    """`(proxy, proxy_auth)` for `url` from `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`, or `(None, None)`."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


class _Malformed(ValueError):
    pass


def _encode_png(img: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class GeminiTeacher:
    """Teacher on the Gemini API through google-genai.

    Args:
        model (`str`, *optional*, defaults to `"gemini-2.5-flash"`): model name.
        api_key (`str`, *optional*): defaults to `GEMINI_API_KEY`, then `GOOGLE_API_KEY`.
        base_url (`str`, *optional*): API base URL (e.g. a `FakeGeminiServer.url`).
        concurrency (`int`, *optional*, defaults to 8): requests in flight at once (`asyncio.Semaphore`).
        max_retries (`int`, *optional*, defaults to 5): retries per request on 429 / 5xx / timeouts / malformed JSON.
        timeout_s (`float`, *optional*, defaults to 120): per-attempt timeout.
        backoff_s (`float`, *optional*, defaults to 1.0): first backoff; doubles per retry, times a jitter in
            [0.5, 1.5), capped at `max_backoff_s`.
        cache_dir (`str`, *optional*): on-disk response cache (one JSON per request hash); `None` disables it.
        temperature (`float`, *optional*, defaults to 0.2).
        max_frames (`int`, *optional*, defaults to 8): video frames sent per request (plus the overlays).
        price_in_per_mtok / price_out_per_mtok (`float`): USD per million input / output tokens for the cost estimate.

    Per-call CPU matters: with many requests in flight, every millisecond of client work per call delays the whole
    batch of responses that arrive together. So each call sends plain-dict `contents` and no per-call `config`: the
    generation config (`responseMimeType`, `responseSchema`, `temperature`) is sent as the request body's
    `generationConfig` through `HttpOptions.extra_body` of one `genai.Client` per schema (the schema is still
    validated once as a `types.Schema`), which skips google-genai's per-call pydantic copy and conversion of the
    config. All those clients share one `aiohttp.ClientSession` with `trust_env=False`: the SDK's own session has
    `trust_env=True`, which costs two thread-pool round trips per request (`~/.netrc` and proxy lookups); the proxy
    is read from the environment (`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`) once instead. Cache files are written
    in a worker thread, so a slow disk does not stall the requests in flight.

    Example:

    ```python
    >>> teacher = GeminiTeacher(base_url=server.url, api_key="fake", cache_dir="cache")  # doctest: +SKIP
    ```
    """

    name = "gemini"

    def __init__(
        self,
        model: str = "gemini-2.5-flash",
        api_key: str | None = None,
        base_url: str | None = None,
        concurrency: int = 8,
        max_retries: int = 5,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        cache_dir: str | None = None,
        temperature: float = 0.2,
        max_frames: int = 8,
        price_in_per_mtok: float = 0.30,
        price_out_per_mtok: float = 2.50,
        seed: int = 0,
    ):
        key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        if not key:
            raise ValueError(
                "GeminiTeacher needs an API key: set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment, or use "
                "teacher='rule' for the offline RuleTeacher."
            )
        if concurrency < 1 or max_retries < 0:
            raise ValueError(f"Need concurrency >= 1 and max_retries >= 0, got {concurrency} and {max_retries}.")
        self.model, self.base_url, self.concurrency, self.max_retries = model, base_url, concurrency, max_retries
        self.timeout_s, self.backoff_s, self.max_backoff_s = timeout_s, backoff_s, max_backoff_s
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.temperature, self.max_frames = temperature, max_frames
        self.price_in, self.price_out = price_in_per_mtok, price_out_per_mtok
        self._key = key  # kept private; never logged, never written, not in repr or stats
        self._rng = random.Random(seed)
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self._loop = None
        self._session = None  # aiohttp.ClientSession shared by the clients, bound to `_session_loop`
        self._session_loop = None
        self._clients: dict = {}  # canonical schema JSON -> genai.Client sending that generationConfig

    def __repr__(self) -> str:
        return f"GeminiTeacher(model={self.model!r}, base_url={self.base_url!r}, concurrency={self.concurrency})"

    # -- plumbing

    def _get_loop(self):
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def _client_for(self, schema: dict):
        """The `genai.Client` whose requests carry `schema`'s generation config (built once per schema and loop)."""
        import aiohttp
        import pydantic
        from google import genai
        from google.genai import types

        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop or self._session.closed:
            proxy, proxy_auth = _env_proxy(self.base_url or "https://generativelanguage.googleapis.com")
            proxy_kw = {"proxy": proxy, "proxy_auth": proxy_auth} if proxy is not None else {}
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=False, **proxy_kw)
            self._session_loop, self._clients = loop, {}
        key = json.dumps(schema, sort_keys=True)
        client = self._clients.get(key)
        if client is None:
            try:
                types.Schema.model_validate(_to_sdk_schema(schema))
            except pydantic.ValidationError as e:
                where = "; ".join(f"{'.'.join(map(str, d['loc'])) or '<root>'}: {d['msg']}" for d in e.errors())
                raise ValueError(
                    f"GeminiTeacher: the response schema is not a valid Gemini schema ({where}); fix the schema "
                    "passed to generate_json (OpenAPI-style dict: type, properties, items, required, minItems, ...)."
                ) from None
            generation = {
                "responseMimeType": "application/json",
                "responseSchema": _wire_schema(schema),
                "temperature": self.temperature,
            }
            opts = types.HttpOptions(
                base_url=self.base_url,
                timeout=int(self.timeout_s * 1000),
                aiohttp_client=self._session,
                extra_body={"generationConfig": generation},
            )
            client = self._clients[key] = genai.Client(api_key=self._key, http_options=opts)
        return client

    async def aclose(self) -> None:
        """Closes the HTTP session from inside the event loop that used it (for callers awaiting `generate_json` in
        their own loop); `close()` does this for the teacher's own loop."""
        if self._session is not None and self._session_loop is asyncio.get_running_loop():
            for client in self._clients.values():
                await client.aio.aclose()
                client.close()
            await self._session.close()
        self._session, self._session_loop, self._clients = None, None, {}

    def close(self) -> None:
        """Closes the HTTP session and the event loop; the teacher can still be used afterwards (they are rebuilt)."""
        if self._loop is not None:
            self._loop.run_until_complete(self.aclose())
            self._loop.close()
            self._loop = None
        self._session, self._session_loop, self._clients = None, None, {}

    def _run(self, coros) -> list:
        async def gather():
            self._sem = asyncio.Semaphore(self.concurrency)
            return await asyncio.gather(*coros(), return_exceptions=True)

        return self._get_loop().run_until_complete(gather())

    def request_key(self, prompt: str, images: list[bytes], schema: dict) -> str:
        """Cache key: a hash of the model, prompt, image bytes, schema and temperature."""
        h = hashlib.sha256()
        head = {"model": self.model, "prompt": prompt, "schema": schema, "temperature": self.temperature}
        h.update(json.dumps(head, sort_keys=True).encode())
        for img in images:
            h.update(hashlib.sha256(img).digest())
        return h.hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _count(self, **kw) -> None:
        with self._lock:
            self._counts.update(kw)

    async def generate_json(self, prompt: str, images: list[bytes], schema: dict) -> dict:
        """One structured request with cache, bounded concurrency and retries; returns the parsed JSON object.

        Raises:
            TeacherError: with reason `http_<code>`, `timeout` or `malformed` once retries are exhausted.
        """
        from google.genai import errors

        key = self.request_key(prompt, images, schema)
        path = self._cache_path(key)
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
                self._count(cache_hits=1)
                return data
            except (OSError, json.JSONDecodeError):
                pass  # a torn cache file is just a miss
        client = self._client_for(schema)  # carries the generation config for this schema
        parts = [{"inline_data": {"data": b, "mime_type": "image/png"}} for b in images] + [{"text": prompt}]
        contents = [{"role": "user", "parts": parts}]
        required = list(schema.get("required") or [])
        reason, message = "unknown", ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + self._rng.random())
                self._count(retries=1)
                await asyncio.sleep(delay)
            try:
                async with self._sem:
                    self._count(requests=1)
                    resp = await asyncio.wait_for(
                        client.aio.models.generate_content(model=self.model, contents=contents),
                        timeout=self.timeout_s,
                    )
                usage = resp.usage_metadata
                if usage is not None:
                    self._count(
                        prompt_tokens=int(usage.prompt_token_count or 0),
                        output_tokens=int(usage.candidates_token_count or 0),
                    )
                try:
                    data = json.loads(resp.text or "")
                except (json.JSONDecodeError, TypeError) as e:
                    raise _Malformed(f"response is not JSON: {e}") from None
                if not isinstance(data, dict) or any(k not in data for k in required):
                    raise _Malformed(f"response lacks required keys {required}")
                bad = _schema_violation(data, schema)
                if bad:
                    raise _Malformed(bad)
            except errors.APIError as e:
                code = int(getattr(e, "code", 0) or 0)
                reason, message = f"http_{code}", str(e)[:200]
                self._count(**{f"error_http_{code}": 1})
                if code != 429 and code < 500:
                    raise TeacherError(reason, f"Gemini request failed with HTTP {code}: {message}") from None
                continue
            except (asyncio.TimeoutError, TimeoutError) as e:
                reason, message = "timeout", f"{type(e).__name__}"
                self._count(error_timeout=1)
                continue
            except _Malformed as e:
                reason, message = "malformed", str(e)
                self._count(error_malformed=1)
                continue
            except Exception as e:  # httpx / aiohttp transport errors, timeouts raised by the transport
                name = type(e).__name__
                reason = "timeout" if "timeout" in name.lower() else "transport"
                message = f"{name}: {str(e)[:200]}"
                self._count(**{f"error_{reason}": 1})
                continue
            if path is not None:  # file creation can block for a while on a busy disk: off the event loop
                await asyncio.to_thread(_atomic_write_bytes, path, json.dumps(data).encode())
            self._count(ok=1)
            return data
        self._count(failed=1)
        raise TeacherError(
            reason, f"Gemini request failed after {self.max_retries + 1} attempts ({reason}): {message}"
        )

    # -- teacher interface

    def _frame_indices(self, clip) -> list[int]:
        idx = np.unique(np.round(np.linspace(0, clip.num_frames - 1, min(self.max_frames, clip.num_frames))))
        return [int(i) for i in idx]

    def _frames(self, clip) -> list[bytes]:
        return [_encode_png(clip.frames[i]) for i in self._frame_indices(clip)]

    async def _landmarks(self, clip) -> dict:
        if has_object_geometry(clip) and clip.meta.get("source") == "synthetic":
            return geometry_landmarks(clip)
        data = await self.generate_json(LANDMARK_PROMPT, self._frames(clip), LANDMARK_SCHEMA)
        H, W = clip.height, clip.width
        out = {}
        for role in ("static", "dynamic"):
            obj = data.get(f"{role}_object") or {}
            try:
                px, py = obj["point"][:2]
                box = obj["box"][:4]
                out[role] = {
                    "name": str(obj["name"]),
                    "role": role,
                    "description": str(obj.get("description", "")),
                    "frame": 0,
                    "point": [int(px / 1000 * W), int(py / 1000 * H)],
                    "box": [
                        int(box[0] / 1000 * W),
                        int(box[1] / 1000 * H),
                        int(box[2] / 1000 * W),
                        int(box[3] / 1000 * H),
                    ],
                }
            except (KeyError, TypeError, ValueError, IndexError):
                out[role] = None
        return out

    def landmarks_many(self, clips) -> list:
        return self._run(lambda: [self._landmarks(c) for c in clips])

    async def _label(self, request: dict, images: dict) -> str:
        clip, task, landmark = request["clip"], request["task"], request.get("landmark")
        if task not in TEACHER_LABEL_CLASSES:
            raise TeacherError("no_geometry", NO_TEACHER_CLASSES)
        if task != "camera_motion" and not landmark:
            raise TeacherError(
                "no_dynamic_landmark", f"Clip {clip.clip_id}: {task} needs a dynamic landmark and none was chosen."
            )
        idx = self._frame_indices(clip)
        fps = clip.fps or 1.0
        prompt = label_prompt(task, [i / fps for i in idx], landmark, (clip.height, clip.width))
        if id(clip) not in images:  # a clip's tasks share one encoding of its frames
            images[id(clip)] = [_encode_png(clip.frames[i]) for i in idx]
        data = await self.generate_json(prompt, images[id(clip)], label_schema(task))
        return str(data["answer"])

    def labels_many(self, requests) -> list:
        """Labels for plain videos: per `{"clip", "task", "landmark"}` request one class of
        `TEACHER_LABEL_CLASSES[task]` or `UNSURE`, or an exception (`TeacherError` with reason `no_geometry` for a
        task without classes, `no_dynamic_landmark` for an object task without its landmark, `malformed` after the
        retries when the model keeps answering outside the enum, `http_<code>`, `timeout`)."""
        images: dict = {}
        return self._run(lambda: [self._label(r, images) for r in requests])

    async def _cot(self, request: dict) -> str:
        images = [_encode_png(f) for f in request.get("frames_for_teacher", [])]
        images += [_encode_png(o) for o in request["overlays"]]
        data = await self.generate_json(cot_prompt(request), images, COT_SCHEMA)
        return assemble_cot(data.get("reasoning", ""), data.get("answer", ""), request["options"])

    def cot_many(self, requests) -> list:
        return self._run(lambda: [self._cot(r) for r in requests])

    def stats(self) -> dict:
        """Counts (requests, retries, cache hits, errors by kind), tokens and the estimated cost in USD."""
        with self._lock:
            c = dict(self._counts)
        cost = (c.get("prompt_tokens", 0) * self.price_in + c.get("output_tokens", 0) * self.price_out) / 1e6
        return {"teacher": self.name, "model": self.model, **c, "estimated_cost_usd": round(cost, 6)}


__all__ = ["GeminiTeacher"]
