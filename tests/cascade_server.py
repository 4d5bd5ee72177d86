"""An OpenAI-compatible HTTP server for the cascade backend: only the models are fake.

The REAL openai SDK talks to it over real HTTP/1.1 (h11, already in the lock): `/v1/audio/transcriptions`
(multipart; SSE `transcript.text.delta` / `transcript.text.done` with usage when stream=true),
`/v1/chat/completions` (SSE `chat.completion.chunk`s with content and tool-call deltas, a usage chunk,
`[DONE]`), `/v1/audio/speech` (raw 24 kHz PCM16, streamed) and `/v1/models`. Requests are validated
against the SDK's param TypedDicts (tests/cascade_protocol.py) and refused with a 400 like the API's.
Transcripts and answers are scripted; stage delays are fixed; `Faults` make a stage misbehave on demand.
`ThreadedCascadeServer` runs it on its own loop in a thread; `ProcessCascadeServer` in a child process (its
own interpreter and GIL, as a real server is: what benchmarks use, so the server's work is not charged to Hark).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import subprocess
import sys
import threading
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from io import BytesIO
from pathlib import Path
from typing import Any, TextIO

import h11
import numpy as np
from openai.types.audio.speech_create_params import SpeechCreateParams
from openai.types.audio.transcription_create_params import TranscriptionCreateParamsStreaming
from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming

from tests.cascade_protocol import RequestError, validate

RATE_HZ = 24_000
MS_PER_CHAR = 60
"""Length of the fake speech: 60 ms of audio per character of text (about a real voice's pace)."""
STAGES = ("stt", "llm", "tts")


def tone(ms: int, freq_hz: float = 330.0, amplitude: float = 0.3) -> bytes:
    t = np.arange(RATE_HZ * ms // 1000) / RATE_HZ
    return (np.sin(2 * math.pi * freq_hz * t) * amplitude * 32767).astype("<i2").tobytes()


@dataclass
class ChatReply:
    """One scripted model turn: words, or a function call (name, arguments JSON)."""

    text: str = "It is a lovely day in the neighbourhood."
    tool_call: tuple[str, str] | None = None


@dataclass
class Faults:
    """Misbehaviour per stage ("stt", "llm", "tts"), read when a request arrives."""

    status: dict[str, int] = field(default_factory=dict)
    """Answer this stage with this HTTP status (401, 429, 503...) and an API error body."""
    slow_first_s: dict[str, float] = field(default_factory=dict)
    """Extra wait before the first byte of the stage's answer (beyond the client's timeout = a stall)."""
    drop: set[str] = field(default_factory=set)
    """Abort the connection in the middle of the stage's stream."""
    unknown_event: set[str] = field(default_factory=set)
    """Send an SSE event of an unknown type in the stage's stream (clients must skip it)."""
    malformed: set[str] = field(default_factory=set)
    """Send a chunk that is not valid JSON in the stage's stream."""


@dataclass
class Record:
    """What the server received (appended from the server thread)."""

    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(stage, request body as parsed; the upload's bytes replaced by its length)."""
    rejected: list[tuple[str, int, str]] = field(default_factory=list)
    """(stage, status, message) of every refusal (bad key, bad request, injected fault)."""
    audio_s: list[float] = field(default_factory=list)
    """Length of each uploaded request."""
    t_received: list[tuple[str, float]] = field(default_factory=list)
    """(stage, time.monotonic()) when each request's body was complete."""
    opened: list[float] = field(default_factory=list)
    """time.monotonic() when each connection was accepted (its index is its number)."""
    via: list[tuple[str, int]] = field(default_factory=list)
    """(stage or "" for /models, connection number) of every request, in order."""
    answered: list[tuple[str, float, float]] = field(default_factory=list)
    """(stage, received, due) for each stage answer: received = body complete, due = the fixed delay over
    and the first byte about to be written (time.monotonic(); benchmarks split the round trip with it)."""
    timing: TextIO | None = None
    """Also write each `answered` entry there as a JSON line (a server in a child process)."""

    def bodies(self, stage: str) -> list[dict[str, Any]]:
        return [body for s, body in self.requests if s == stage]

    def count(self, stage: str) -> int:
        return len(self.bodies(stage))


class _Dropped(Exception):
    pass


class CascadeTestServer:
    def __init__(
        self,
        *,
        api_key: str | None = "sk-test",
        stt_delay_ms: int = 0,
        llm_first_ms: int = 0,
        tts_first_ms: int = 0,
        token_ms: int = 5,
        models: tuple[str, ...] = ("gpt-4o-mini-transcribe", "gpt-4.1-mini", "gpt-4o-mini-tts"),
    ) -> None:
        self.api_key = api_key
        """None: a local server that takes any key."""
        self.stt_delay_ms = stt_delay_ms
        self.llm_first_ms = llm_first_ms
        self.tts_first_ms = tts_first_ms
        self.token_ms = token_ms
        self.models = models
        self.transcripts: deque[str] = deque()
        self.default_transcript = "what time is it"
        self.replies: deque[ChatReply] = deque()
        self.default_reply = ChatReply()
        self.faults = Faults()
        self.record = Record()
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._connection, host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._open):
            task.cancel()
        await asyncio.gather(*self._open, return_exceptions=True)

    # --- HTTP/1.1 ---------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        number = len(self.record.opened)
        self.record.opened.append(time.monotonic())
        try:
            while True:
                request = await _next_event(conn, reader)
                if not isinstance(request, h11.Request):
                    return
                body = bytearray()
                while isinstance(event := await _next_event(conn, reader), h11.Data):
                    body += event.data
                await _Exchange(self, conn, writer, request, bytes(body), number).handle()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (_Dropped, ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly (asyncio's stream callback reads the result)
            pass
        finally:
            self._open.discard(task)
            writer.close()

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
            continue
        return event


class _Exchange:
    """One request and its answer."""

    def __init__(
        self,
        server: CascadeTestServer,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
        connection: int,
    ) -> None:
        self.server = server
        self.connection = connection
        self.conn = conn
        self.writer = writer
        self.method = request.method.decode()
        self.path = request.target.decode().partition("?")[0]
        self.headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        self.body = body
        self.stage = ""
        self.received = time.monotonic()
        """When the request's body was complete."""

    async def handle(self) -> None:
        routes = {
            ("GET", "/v1/models"): ("", self._models),
            ("POST", "/v1/audio/transcriptions"): ("stt", self._transcribe),
            ("POST", "/v1/chat/completions"): ("llm", self._chat),
            ("POST", "/v1/audio/speech"): ("tts", self._speech),
        }
        route = routes.get((self.method, self.path))
        if route is None:
            return await self._error(404, f"Invalid URL ({self.method} {self.path})", "invalid_request_error")
        self.stage, handler = route
        self.server.record.t_received.append((self.stage, self.received))
        self.server.record.via.append((self.stage, self.connection))
        key = self.headers.get("authorization", "").removeprefix("Bearer ")
        if self.server.api_key is not None and key != self.server.api_key:
            return await self._error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        status = self.server.faults.status.get(self.stage)
        if status is not None:
            return await self._error(status, f"injected fault {status}", "server_error", "test_fault")
        try:
            await handler()
        except RequestError as e:
            await self._error(400, str(e), "invalid_request_error", param=e.param)

    # --- endpoints --------------------------------------------------------------------------------------

    async def _models(self) -> None:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "hark-test"} for m in self.server.models]
        await self._json({"object": "list", "data": data})

    async def _transcribe(self) -> None:
        fields, upload = self._multipart()
        params: dict[str, Any] = {k: _form_value(k, v) for k, v in fields.items()}
        params["file"] = b"<upload>"
        self.server.record.requests.append(("stt", {**params, "file": len(upload)}))
        streaming = params.get("stream") is True
        if not streaming:
            params.pop("stream", None)
        validate(params | ({} if streaming else {"stream": True}), TranscriptionCreateParamsStreaming)
        audio_s = _wav_seconds(upload)
        self.server.record.audio_s.append(audio_s)
        text = self.server.transcripts.popleft() if self.server.transcripts else self.server.default_transcript
        await self._first_delay(self.server.stt_delay_ms)
        usage = {
            "type": "tokens",
            "input_tokens": int(audio_s * 10),
            "output_tokens": len(text.split()),
            "total_tokens": int(audio_s * 10) + len(text.split()),
            "input_token_details": {"audio_tokens": int(audio_s * 10), "text_tokens": 0},
        }
        if not streaming:
            return await self._json({"text": text, "usage": {"type": "duration", "seconds": round(audio_s)}})
        await self._sse_start()
        words = text.split(" ")
        for i, word in enumerate(words):
            if i == 1:
                await self._misbehave()
            await self._sse({"type": "transcript.text.delta", "delta": word + (" " if i < len(words) - 1 else "")})
        await self._sse({"type": "transcript.text.done", "text": text, "usage": usage})
        await self._end()

    async def _chat(self) -> None:
        body = self._json_body()
        self.server.record.requests.append(("llm", body))
        validate(body, CompletionCreateParamsStreaming)
        if body.get("stream") is not True:
            raise RequestError("this test server answers streamed requests only (stream: true)", "stream")
        reply = self.server.replies.popleft() if self.server.replies else self.server.default_reply
        if reply.tool_call is not None and not body.get("tools"):
            raise RequestError("scripted a tool call, but the request offered no tools", "tools")
        cid, created, model = self.server.new_id("chatcmpl"), int(time.time()), str(body["model"])

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }

        await self._first_delay(self.server.llm_first_ms)
        await self._sse_start()
        await self._sse(chunk({"role": "assistant", "content": ""}))
        if reply.tool_call is not None:
            name, args = reply.tool_call
            call_id = self.server.new_id("call")
            first = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            await self._sse(chunk({"tool_calls": [first]}))
            await self._misbehave()
            for i in range(0, len(args), 8):  # the arguments in pieces, as the API sends them
                await self._sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 8]}}]}))
            finish = "tool_calls"
            out_tokens = len(args) // 4 + 5
        else:
            words = reply.text.split(" ")
            for i, word in enumerate(words):
                if i == 2:
                    await self._misbehave()
                await self._sse(chunk({"content": word + (" " if i < len(words) - 1 else "")}))
                await asyncio.sleep(self.server.token_ms / 1000)
            finish = "stop"
            out_tokens = len(words)
        await self._sse(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt = sum(len(json.dumps(m)) for m in body["messages"]) // 4
            usage = {"prompt_tokens": prompt, "completion_tokens": out_tokens, "total_tokens": prompt + out_tokens}
            await self._sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        await self._sse_raw(b"data: [DONE]\n\n")
        await self._end()

    async def _speech(self) -> None:
        body = self._json_body()
        self.server.record.requests.append(("tts", body))
        validate(body, SpeechCreateParams)
        if body.get("response_format") != "pcm":
            raise RequestError("this test server speaks response_format 'pcm' only", "response_format")
        pcm = tone(max(200, MS_PER_CHAR * len(str(body["input"]))))
        await self._first_delay(self.server.tts_first_ms)
        self._send(h11.Response(status_code=200, headers=[("content-type", "application/octet-stream")]))
        step = 4800  # 100 ms, faster than real time, as a real speech server streams
        for i in range(0, len(pcm), step):
            if i == step * 2:
                await self._misbehave()
            await self._data(pcm[i : i + step])
        await self._end()

    # --- misbehaviour -----------------------------------------------------------------------------------

    async def _first_delay(self, ms: int) -> None:
        """The stage's fixed delay, counted from the moment the request was received: the server's own parsing
        and checking is part of it (a benchmark subtracts the delay as the server's time)."""
        due = self.received + ms / 1000 + self.server.faults.slow_first_s.get(self.stage, 0.0)
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        record = self.server.record
        record.answered.append((self.stage, self.received, time.monotonic()))
        if record.timing is not None:
            record.timing.write(json.dumps(record.answered[-1]) + "\n")
            record.timing.flush()

    async def _misbehave(self) -> None:
        faults = self.server.faults
        if self.stage in faults.unknown_event:
            await self._sse({"type": "test.unknown_event", "note": "clients must skip events they do not know"})
        if self.stage in faults.malformed:
            await self._sse_raw(b'data: {"choices": [{"delta": \n\n')
        if self.stage in faults.drop:
            await self.writer.drain()
            self.writer.transport.abort()
            raise _Dropped

    # --- wire helpers -----------------------------------------------------------------------------------

    def _send(self, event: Any) -> None:
        self.writer.write(self.conn.send(event))

    async def _data(self, data: bytes) -> None:
        self._send(h11.Data(data=data))
        await self.writer.drain()

    async def _end(self) -> None:
        self._send(h11.EndOfMessage())
        await self.writer.drain()

    async def _json(self, obj: Any, status: int = 200) -> None:
        data = json.dumps(obj).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
        self._send(h11.Response(status_code=status, headers=headers))
        await self._data(data)
        await self._end()

    async def _sse_start(self) -> None:
        self._send(h11.Response(status_code=200, headers=[("content-type", "text/event-stream")]))

    async def _sse(self, obj: Any) -> None:
        await self._sse_raw(b"data: " + json.dumps(obj).encode() + b"\n\n")

    async def _sse_raw(self, data: bytes) -> None:
        await self._data(data)

    async def _error(
        self, status: int, message: str, kind: str, code: str | None = None, param: str | None = None
    ) -> None:
        self.server.record.rejected.append((self.stage, status, message))
        await self._json({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)

    def _json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.body)
        except ValueError as e:
            raise RequestError(f"We could not parse the JSON body of your request ({e})", "body") from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object", "body")
        return body

    def _multipart(self) -> tuple[dict[str, str], bytes]:
        ctype = self.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise RequestError(f"expected multipart/form-data, got {ctype!r}", "body")
        message = BytesParser(policy=HTTP).parsebytes(b"content-type: " + ctype.encode() + b"\r\n\r\n" + self.body)
        fields: dict[str, str] = {}
        upload = b""
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if name == "file":
                upload = payload
            elif isinstance(name, str):
                fields[name] = payload.decode()
        if not upload:
            raise RequestError("Missing required parameter: 'file'.", "file")
        return fields, upload


def _form_value(name: str, value: str) -> Any:
    if name == "stream":
        return value.lower() == "true"
    if name == "temperature":
        return float(value)
    return value


def _wav_seconds(data: bytes) -> float:
    try:
        with wave.open(BytesIO(data)) as w:
            return w.getnframes() / w.getframerate()
    except (wave.Error, EOFError) as e:
        raise RequestError(f"Invalid file format ({e}); supported formats: wav, mp3, ...", "file") from None


class ThreadedCascadeServer:
    """The server on its own loop in a daemon thread (a daemon or benchmark in another loop can use it)."""

    def __init__(self, **kwargs: Any) -> None:
        self.server = CascadeTestServer(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cascade-test-server", daemon=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    def start(self, port: int = 0) -> ThreadedCascadeServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(port=port), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()


class ProcessCascadeServer:
    """The server in a child process (`python -m tests.cascade_server`): nothing it does competes with the
    process under test for the GIL. Only what the command line sets can be set (delays, key, one reply)."""

    def __init__(
        self,
        *,
        api_key: str | None = "sk-test",
        stt_delay_ms: int = 0,
        llm_first_ms: int = 0,
        tts_first_ms: int = 0,
        token_ms: int = 5,
        reply: str | None = None,
        timing: Path | None = None,
    ) -> None:
        args = [f"--stt-delay-ms={stt_delay_ms}", f"--llm-first-ms={llm_first_ms}", f"--tts-first-ms={tts_first_ms}"]
        args += [f"--token-ms={token_ms}", f"--api-key={api_key or ''}"]
        if reply is not None:
            args.append(f"--reply={reply}")
        if timing is not None:
            args.append(f"--timing={timing}")
        self._args = args
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 20.0) -> ProcessCascadeServer:
        root = Path(__file__).resolve().parent.parent
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cascade_server", *self._args], cwd=root, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = _readline_within(self._proc, timeout_s)
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the cascade test server did not start (it printed {line!r})")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None


def _readline_within(proc: subprocess.Popen[str], timeout_s: float) -> str:
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return out[0].strip() if out else ""


async def _serve(args: argparse.Namespace) -> None:
    server = CascadeTestServer(
        api_key=args.api_key or None,
        stt_delay_ms=args.stt_delay_ms,
        llm_first_ms=args.llm_first_ms,
        tts_first_ms=args.tts_first_ms,
        token_ms=args.token_ms,
    )
    if args.reply is not None:
        server.default_reply = ChatReply(args.reply)
    if args.timing is not None:
        server.record.timing = args.timing.open("a", encoding="utf-8")
    await server.start(port=args.port)
    print(f"PORT {server.port}", flush=True)
    try:
        await asyncio.Event().wait()  # until terminated
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="The OpenAI-compatible cascade test server (only models faked)")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed as PORT n)")
    parser.add_argument("--api-key", default="sk-test", help="the key to accept; empty = any key")
    parser.add_argument("--stt-delay-ms", type=int, default=0)
    parser.add_argument("--llm-first-ms", type=int, default=0)
    parser.add_argument("--tts-first-ms", type=int, default=0)
    parser.add_argument("--token-ms", type=int, default=5)
    parser.add_argument("--reply", default=None, help="what the fake model answers every time")
    parser.add_argument("--timing", type=Path, default=None, help="append (stage, received, due) JSON lines here")
    args = parser.parse_args()
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
