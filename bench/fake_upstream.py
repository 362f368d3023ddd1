"""A real HTTP server on 127.0.0.1 that speaks OpenAI, Anthropic and Cortex, and misbehaves on demand.

Tests script faults per request (a queue per model name, then a global queue, consumed in order);
benchmarks use the canned default answer. Every request is recorded (path, headers, decoded body)
unless ``record=False``.

    with FakeUpstream() as up:
        up.script(Reply.error(429, retry_after=1), model="gpt-x")
        ... POST to f"{up.url}/v1/chat/completions" ...

    python -m bench.fake_upstream --port 9000      # standalone, for load tests
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from bench.fake_wire import (
    anthropic_body,
    anthropic_events,
    cortex_events,
    openai_body,
    openai_events,
)
from models.tokens import estimate_tokens
from router.providers.anthropic_wire import from_anthropic_request
from router.providers.cortex_wire import from_cortex_request
from router.providers.embeddings import labelled_vector
from router.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    CompletionTokensDetails,
    FunctionCall,
    Message,
    PromptTokensDetails,
    ResponseMessage,
    StreamOptions,
    Tool,
    ToolCall,
    Usage,
)

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "tests" / "data" / "transcripts"

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(dict[str, Any])


class _WireRequest(msgspec.Struct):
    """The fields the fake reads; gateways add their own (OpenRouter ``provider``, ...), so extras pass."""

    messages: list[Message]
    model: str = ""
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    n: int | None = None

CONTEXT_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "openai": (400, {"error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in "
                   "9001 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
    "anthropic": (400, {"type": "error", "error": {
        "type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"}}),
    "cortex": (400, {"message": "max tokens of 8192 exceeded: the input is too long for the model's context "
                                "window", "code": "390400"}),
}


@dataclass
class Reply:
    """One scripted answer or fault. Defaults: 200 with the canned answer."""

    status: int = 200
    text: str | None = None
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = None  # default: "tool_calls" when tool_calls else "stop"
    usage: Usage | None = None  # default: deterministic small counts; set it to lie
    include_usage: bool = True  # False: a stream without usage
    error: dict[str, Any] | None = None  # error body for status >= 400
    body: bytes | None = None  # raw body override (malformed JSON, garbage)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the status line
    chunk_delay: float = 0.0  # between stream chunks
    stall_after: int | None = None  # stream: send this many chunks, then go silent
    stall_for: float = 3600.0
    cut_after: int | None = None  # stream: send this many chunks, then drop the connection
    no_done: bool = False  # stream: end cleanly but without the terminator ([DONE] / message_stop)
    no_finish: bool = False  # stream: no finish_reason
    content_type: str | None = None
    oversized: int | None = None  # pad a JSON body to at least this many bytes
    events: list[bytes] | None = None  # a recorded stream, replayed byte for byte (see ``transcript``)
    write_size: int | None = None  # stream: the body goes out in writes of this many bytes, split anywhere
    cut_mid: bool = False  # with cut_after: half of that event goes out before the drop (a cut inside an event)
    bad_events: tuple[int, ...] = ()  # stream: an undecodable event goes out before each of these event indices
    continues: bool = False  # answer only the rest of the text after the request's last assistant message
    overlap: int = 0  # with continues: repeat this many characters of the seam first (a model that restarts)
    reject_prefill: bool = False  # 400 when the last message is the assistant's (APIs without prefill)

    @classmethod
    def transcript(cls, name: str | Path, **kwargs: Any) -> Reply:
        """Replay a recorded SSE body: a file name in tests/data/transcripts/ (``.sse`` optional) or a path.

        The events go out exactly as recorded, whatever the request says (its ``stream`` flag included);
        ``cut_after``, ``stall_after`` and ``chunk_delay`` still apply, counted in events."""
        path = Path(name)
        if not path.is_absolute():
            path = TRANSCRIPTS / (path.name if path.suffix else f"{path.name}.sse")
        raw = path.read_bytes().replace(b"\r\n", b"\n").strip(b"\n")
        return cls(events=[event + b"\n\n" for event in raw.split(b"\n\n") if event.strip()], **kwargs)

    @classmethod
    def error_status(cls, status: int, message: str = "fault injected", *, retry_after: float | str | None = None,
                     fmt: str = "openai") -> Reply:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if fmt == "anthropic":
            body: dict[str, Any] = {"type": "error", "error": {"type": "api_error", "message": message}}
        elif fmt == "cortex":
            body = {"message": message, "code": str(status)}
        else:
            body = {"error": {"message": message, "type": "server_error", "code": str(status)}}
        return cls(status=status, error=body, headers=headers)

    @classmethod
    def context_length(cls, fmt: str = "openai") -> Reply:
        status, body = CONTEXT_ERRORS[fmt]
        return cls(status=status, error=body)


class Recorded(msgspec.Struct):
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]


class FakeUpstream:
    """Threaded aiohttp server on an ephemeral loopback port."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, record: bool = True,
                 answer: str = "Hello from the fake upstream. The answer is 42.") -> None:
        self.host, self.port = host, port
        self.record = record
        self.answer = answer
        self.requests: list[Recorded] = []
        self._by_model: dict[str, deque[Reply]] = {}
        self._queue: deque[Reply] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    # -------------------------------------------------------------------------------- scripting
    def script(self, *replies: Reply, model: str | None = None) -> None:
        (self._by_model.setdefault(model, deque()) if model else self._queue).extend(replies)

    def unscript(self, model: str | None = None) -> None:
        """Drop the replies still queued for ``model`` (or the global queue): e.g. the end of an outage."""
        (self._by_model.get(model, deque()) if model else self._queue).clear()

    def reset(self) -> None:
        self._by_model.clear()
        self._queue.clear()
        self.requests.clear()

    def _next(self, model: str) -> Reply:
        queue = self._by_model.get(model)
        if queue:
            return queue.popleft()
        if self._queue:
            return self._queue.popleft()
        return _DEFAULT

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -------------------------------------------------------------------------------- lifecycle
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/api/v2/cortex/inference:complete", self._cortex)
        return app

    def start(self) -> FakeUpstream:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._stopping = asyncio.Event()

        async def main() -> None:
            runner = self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, backlog=1024)
            await site.start()
            self.port = runner.addresses[0][1]
            ready.set()
            assert self._stopping is not None
            await self._stopping.wait()
            await runner.cleanup()

        loop.run_until_complete(main())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------------- handlers
    async def _begin(self, request: web.Request) -> tuple[dict[str, Any], Reply] | web.StreamResponse:
        """The decoded body and the scripted reply, or the response that ends the request here (a fault)."""
        raw = await request.read()
        try:
            body = _dec.decode(raw)
        except msgspec.DecodeError:
            return web.json_response({"error": {"message": "request body is not JSON"}}, status=400)
        if self.record:
            self.requests.append(Recorded(request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        reply = self._next(str(body.get("model", "")))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        messages = body.get("messages")
        if reply.reject_prefill and isinstance(messages, list) and messages and messages[-1].get("role") == "assistant":
            return web.json_response(PREFILL_REJECTED, status=400)
        if reply.events is not None:
            return await self._sse(request, reply, reply.events)
        return self._fault(reply) or (body, reply)

    def _fault(self, reply: Reply) -> web.Response | None:
        if reply.status >= 400:
            data = reply.body if reply.body is not None else _enc.encode(reply.error or {"error": {"message": "error"}})
            return web.Response(status=reply.status, body=data, headers=reply.headers,
                                content_type=reply.content_type or "application/json")
        if reply.body is not None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers,
                                content_type=reply.content_type or "application/json")
        return None

    def _response(self, request: ChatRequest, reply: Reply, model: str) -> ChatResponse:
        text = reply.text if reply.text is not None else (self.answer if not reply.tool_calls else None)
        if reply.continues and text:
            text = _rest_of(text, request.messages, reply.overlap)
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        usage = reply.usage
        if usage is None:
            prompt = 8 + 4 * len(request.messages)
            completion = (len((text or "").split()) + 2 * len(reply.tool_calls or [])) * (request.n or 1)
            usage = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
        message = ResponseMessage(content=text, tool_calls=reply.tool_calls)
        return ChatResponse(id="fake-1", model=model, created=1_700_000_000, usage=usage,
                            choices=[Choice(index=i, message=message, finish_reason=finish)
                                     for i in range(request.n or 1)])  # n choices, as OpenAI answers ``n``

    def _json(self, payload: Any, reply: Reply) -> web.Response:
        data = _enc.encode(payload)
        if reply.oversized and len(data) < reply.oversized:
            data = data[:-1] + b',"pad":"' + b"x" * (reply.oversized - len(data)) + b'"}'
        return web.Response(body=data, headers=reply.headers, content_type=reply.content_type or "application/json")

    async def _sse(self, request: web.Request, reply: Reply, events: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(headers=reply.headers)
        response.content_type = reply.content_type or "text/event-stream"
        with contextlib.suppress(ConnectionResetError):  # the client gave up (a timeout under test)
            await self._write_events(request, response, reply, events)
        return response

    async def _write_events(self, request: web.Request, response: web.StreamResponse, reply: Reply,
                            events: list[bytes]) -> None:
        await response.prepare(request)
        if reply.write_size:
            return await self._write_split(response, b"".join(events), reply.write_size)
        for i, event in enumerate(events):
            if i in reply.bad_events:
                await response.write(b'data: {"id": "broken", "choices": [{"delta": \n\n')
            if reply.cut_after is not None and i >= reply.cut_after:
                if reply.cut_mid:
                    await response.write(event[: len(event) // 2])
                if request.transport is not None:
                    request.transport.abort()  # drop the connection mid-body: a truncated stream
                return
            if reply.stall_after is not None and i >= reply.stall_after:
                await asyncio.sleep(reply.stall_for)
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            await response.write(event)
        await response.write_eof()

    @staticmethod
    async def _write_split(response: web.StreamResponse, body: bytes, size: int) -> None:
        """Events cut at arbitrary bytes (mid-line, mid-JSON, mid-UTF-8), as TCP may deliver them."""
        for start in range(0, len(body), size):
            await response.write(body[start : start + size])
            await asyncio.sleep(0.001)  # each piece its own segment, not coalesced by the kernel
        await response.write_eof()

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.StreamResponse):
            return begun
        body, reply = begun
        wire = msgspec.convert(body, _WireRequest)
        chat = ChatRequest(messages=wire.messages, model=wire.model, stream=wire.stream,
                           stream_options=wire.stream_options, tools=wire.tools, n=wire.n)
        full = self._response(chat, reply, chat.model)
        if not chat.stream:
            return self._json(openai_body(full), reply)
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage) and reply.include_usage
        return await self._sse(request, reply, openai_events(full, include_usage=include_usage,
                                                             finish=not reply.no_finish, done=not reply.no_done))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's /embeddings: the same labelled vectors as the simulated provider (1536 long unless
        ``dimensions``), usage counted by thrifty's token estimate; scripted faults apply."""
        begun = await self._begin(request)
        if isinstance(begun, web.StreamResponse):
            return begun
        body, reply = begun
        texts = body["input"] if isinstance(body.get("input"), list) else [body.get("input", "")]
        model = str(body.get("model", ""))
        dims = int(body.get("dimensions") or 1536)
        data = [{"object": "embedding", "index": i, "embedding": labelled_vector(model, t, dims).tolist()}
                for i, t in enumerate(texts)]
        tokens = sum(estimate_tokens(t) for t in texts)
        return self._json({"object": "list", "data": data, "model": model,
                           "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, reply)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.StreamResponse):
            return begun
        body, reply = begun
        chat = from_anthropic_request(body)
        full = _forced_tool(self._response(chat, reply, chat.model), body.get("tool_choice"))
        if not chat.stream:
            return self._json(anthropic_body(full), reply)
        return await self._sse(request, reply, anthropic_events(full, finish=not reply.no_finish,
                                                                done=not reply.no_done))

    async def _cortex(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.StreamResponse):
            return begun
        body, reply = begun
        chat = from_cortex_request(body)
        full = self._response(chat, reply, chat.model)
        message = full.choices[0].message
        if not chat.stream:
            usage = full.usage or Usage()
            return self._json({"choices": [{"message": {"content": message.content or ""}}],
                               "usage": {"prompt_tokens": usage.prompt_tokens,
                                         "completion_tokens": usage.completion_tokens,
                                         "total_tokens": usage.total_tokens}}, reply)
        return await self._sse(request, reply, cortex_events(full, include_usage=reply.include_usage))


_DEFAULT = Reply()


def _forced_tool(full: ChatResponse, tool_choice: Any) -> ChatResponse:
    """``tool_choice: {"type": "tool", "name": N}`` obliges Claude to call N: a scripted JSON text answer
    goes out as that call's input, as Claude would send it (how JSON mode is emulated on Anthropic)."""
    message = full.choices[0].message
    if not (isinstance(tool_choice, dict) and tool_choice.get("type") == "tool") or message.tool_calls:
        return full
    text = message.content or ""
    try:
        msgspec.json.decode(text, type=dict[str, Any])
    except msgspec.DecodeError:
        return full
    call = ToolCall(id="toolu_fake_forced", function=FunctionCall(name=tool_choice["name"], arguments=text))
    choice = Choice(index=0, message=ResponseMessage(content=None, tool_calls=[call]), finish_reason="tool_calls")
    return msgspec.structs.replace(full, choices=[choice])
PREFILL_REJECTED = {"error": {"message": "This model does not support assistant message prefill: the "
                                         "conversation must end with a user message.",
                              "type": "invalid_request_error", "param": "messages", "code": "prefill_unsupported"}}


def _rest_of(text: str, messages: list[Message], overlap: int) -> str:
    """What is left of ``text`` after the last assistant message (a prefill or a cut answer sent back)."""
    sent = next((m.content for m in reversed(messages) if m.role == "assistant" and isinstance(m.content, str)), "")
    if not sent or not text.startswith(sent):
        return text
    return text[max(0, len(sent) - overlap):]


def usage(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> Usage:
    """Build a Usage for scripted replies (cached and reasoning tokens in OpenAI's details)."""
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached) if cached else None,
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning) if reasoning else None,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="thrifty's loopback fake LLM upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    server = FakeUpstream(host=args.host, port=args.port, record=False)
    web.run_app(server.app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
