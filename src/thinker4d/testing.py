"""Test doubles for using thinker4d offline: `FakeGeminiServer`, a local fake of the Gemini `generateContent` endpoint
(no network, no API key).

Use it to run synthesis against the Gemini code path (`teacher: gemini`, `thinker4d.data.gemini.GeminiTeacher`)
without the real API: in your own tests, to try a synthesis config before paying for calls, or to see how a run
behaves under rate limits and timeouts. `google-genai` accepts a base URL (`HttpOptions(base_url=...)`), so
`GeminiTeacher(base_url=server.url)` talks to this stdlib `ThreadingHTTPServer` on 127.0.0.1 exactly as it would to
the real API; any API key string works. Faults can be injected at a given rate: HTTP 429, HTTP 500, timeouts (the
server sleeps past the client's timeout) and malformed JSON in the model text. Responses go out with TCP_NODELAY, so a
request takes `latency` plus the server's own work, not the extra ~40 ms that Nagle's algorithm and the client's
delayed ACK add to a response written as headers then body. thinker4d's own tests and `benchmarks/synthesis.py` use
it too.

The default responder fills the request's `responseSchema` with plausible values. For thinker4d's CoT prompts it
answers like a cooperative teacher: it reads `Use exactly N <imagery> markers` and `The correct answer is: X` from the
prompt (both lines are part of the real prompt, see `thinker4d.data.cot`) and writes a reasoning with N markers. For
landmark requests (`static_object` / `dynamic_object`) it names two distinct objects with boxes on the 0-1000 grid.
For label requests (an `answer` with an `enum`, see `thinker4d.data.teacher.label_schema`) it picks one of the enum's
classes other than `"Unclear"`, chosen by a hash of the request's contents, so the same video and task always get the
same class and different ones spread over the classes. Faults are injected into every kind of request alike. Pass
`responder=` to answer differently (e.g. a wrong answer first, to exercise the validator's regeneration).

Example: a whole synthesis run through the Gemini code path, offline.

```python
>>> import os
>>> from thinker4d.data.pipeline import SynthesisConfig, run_synthesis
>>> from thinker4d.testing import FakeGeminiServer
>>> os.environ["GEMINI_API_KEY"] = "fake"  # the fake accepts any key  # doctest: +SKIP
>>> with FakeGeminiServer(latency=0.0, failure_rate=0.3, seed=0) as server:  # doctest: +SKIP
...     cfg = SynthesisConfig(world_num_clips=4, teacher="gemini", gemini_base_url=server.url, gemini_backoff_s=0.01)
...     report = run_synthesis(cfg, "out/fake-gemini")
>>> report["teacher_usage"]["requests"], report["kept"]  # doctest: +SKIP
```
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


FAULTS = ("429", "500", "timeout", "malformed")
UNSURE = "Unclear"  # the label enum's "decline" value; the fake teacher never declines
# what the fake "sees" in a landmark request: (name, description, point, box) on the 0-1000 grid of the first frame
FAKE_LANDMARKS = {
    "static_object": ("lamp post", "a grey lamp post left of centre", [400, 500], [340, 300, 460, 700]),
    "dynamic_object": ("ball", "a red ball on the right", [700, 600], [650, 550, 750, 650]),
}
_N_MARKERS = re.compile(r"Use exactly (\d+) <imagery> markers")
_CORRECT = re.compile(r"The correct answer is: ([^\n]+)")


def _request_text(body: dict) -> str:
    parts = []
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            if "text" in part:
                parts.append(part["text"])
    return "\n".join(parts)


def _schema(body: dict) -> dict:
    cfg = body.get("generationConfig") or body.get("generation_config") or {}
    return cfg.get("responseSchema") or cfg.get("response_schema") or {}


def _fill(schema: dict, name: str = "") -> object:
    kind = str(schema.get("type", "STRING")).upper()
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "OBJECT":
        return {k: _fill(v, k) for k, v in (schema.get("properties") or {}).items()}
    if kind == "ARRAY":
        n = int(schema.get("minItems", schema.get("min_items", 2)) or 2)
        return [_fill(schema.get("items") or {}, name) for _ in range(n)]
    if kind == "INTEGER":
        return 500
    if kind == "NUMBER":
        return 0.5
    if kind == "BOOLEAN":
        return True
    return f"the {name or 'object'}"


def _label_answer(body: dict, schema: dict) -> str | None:
    """The class a label request gets: an enum value other than `UNSURE`, by a hash of the request's contents."""
    answer = (schema.get("properties") or {}).get("answer") or {}
    classes = [c for c in answer.get("enum") or [] if c != UNSURE]
    if not classes:
        return None
    digest = zlib.crc32(json.dumps(body.get("contents") or [], sort_keys=True).encode())
    return classes[digest % len(classes)]


def default_responder(body: dict) -> dict:
    """Schema-shaped JSON for any request; a well-formed CoT for thinker4d's CoT prompts, two distinct landmarks for
    landmark requests and a valid class for label requests."""
    text = _request_text(body)
    schema = _schema(body)
    out = _fill(schema)
    if isinstance(out, dict):
        for role, (name, desc, point, box) in FAKE_LANDMARKS.items():
            if isinstance(out.get(role), dict):
                out[role] = {**out[role], "name": name, "description": desc, "point": list(point), "box": list(box)}
        label = _label_answer(body, schema)
        if label is not None:
            out["answer"] = label
            out["evidence"] = f"Across the frames the scene changes the way {label} describes."
    n, correct = _N_MARKERS.search(text), _CORRECT.search(text)
    if isinstance(out, dict) and "reasoning" in out and n and correct:
        k = int(n.group(1))
        marks = " ".join(f"At key frame {i + 1} I picture the highlighted landmark: <imagery>" for i in range(k))
        out["reasoning"] = (
            "I locate the relevant landmark and follow it through the video. "
            f"{marks} Comparing these imagined views, its displacement tells me the motion, "
            f"so the answer is {correct.group(1).strip()}."
        )
        out["answer"] = correct.group(1).strip()
    return out


class FakeGeminiServer:
    """A threaded fake Gemini server. Use as a context manager; `url` is the base URL for the client.

    Args:
        latency (`float`, *optional*, defaults to 0.0): seconds each request waits before answering.
        failure_rate (`float`, *optional*, defaults to 0.0): probability that a request gets a fault.
        faults (`tuple[str]`, *optional*): fault kinds to draw from: `"429"`, `"500"`, `"timeout"`, `"malformed"`.
        hang_s (`float`, *optional*, defaults to 5.0): how long a `"timeout"` fault sleeps (set it above the client
            timeout).
        responder (`Callable[[dict], dict]`, *optional*): request body -> JSON object the "model" returns.
        seed (`int`, *optional*): seed of the fault draws.
    """

    def __init__(
        self,
        latency: float = 0.0,
        failure_rate: float = 0.0,
        faults: tuple = FAULTS,
        hang_s: float = 5.0,
        responder=None,
        seed: int = 0,
    ):
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"Unknown fault kinds {sorted(unknown)}; choose from {FAULTS}.")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be in [0, 1], got {failure_rate}.")
        self.latency, self.failure_rate, self.faults, self.hang_s = latency, failure_rate, tuple(faults), hang_s
        self.responder = responder or default_responder
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.bodies: list[dict] = []
        self.keep_bodies = False
        self._server = None

    def _draw_fault(self) -> str | None:
        with self.lock:
            self.counts["requests"] += 1
            if self.faults and self.rng.random() < self.failure_rate:
                fault = self.rng.choice(self.faults)
                self.counts[fault] += 1
                return fault
            self.counts["ok"] += 1
            return None

    def start(self) -> FakeGeminiServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY: the headers and the body go out in separate writes; with Nagle's algorithm the body
            # waits for the client's delayed ACK of the headers (about 40 ms on Linux), added to every request
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _send(self, code: int, payload: bytes):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                body = json.loads(raw or b"{}")
                if owner.keep_bodies:
                    with owner.lock:
                        owner.bodies.append(body)
                if not self.path.endswith(":generateContent"):
                    self._send(404, json.dumps({"error": {"code": 404, "message": f"no route {self.path}"}}).encode())
                    return
                fault = owner._draw_fault()
                if owner.latency:
                    time.sleep(owner.latency)
                if fault == "timeout":
                    time.sleep(owner.hang_s)
                if fault in ("429", "500"):
                    code = int(fault)
                    status = "RESOURCE_EXHAUSTED" if code == 429 else "INTERNAL"
                    err = {"error": {"code": code, "message": f"fake {fault}", "status": status}}
                    self._send(code, json.dumps(err).encode())
                    return
                text = json.dumps(owner.responder(body))
                if fault == "malformed":
                    text = text[: max(1, len(text) // 2)] + "<<not json"
                payload = {
                    "candidates": [
                        {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
                    ],
                    "usageMetadata": {
                        "promptTokenCount": 100 + len(raw) // 100,
                        "candidatesTokenCount": len(text) // 4,
                        "totalTokenCount": 100 + len(raw) // 100 + len(text) // 4,
                    },
                }
                self._send(200, json.dumps(payload).encode())

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            request_queue_size = 256

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGeminiServer is not started; use `with FakeGeminiServer() as s:` or call start().")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGeminiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["FAKE_LANDMARKS", "FAULTS", "FakeGeminiServer", "default_responder"]
