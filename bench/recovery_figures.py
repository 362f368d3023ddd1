"""Figures for issue 13: each upstream fault once, as the caller of dispatch sees it.

    python -m bench.recovery_figures                 # the faults, then a 60 s outage (cool-down 5 s)
    python -m bench.recovery_figures --outage 10 --cooldown 2

Against the loopback fake upstream (bench/fake_upstream.py), OpenAI wire format, TTFT and stall limits
of 2 s, read timeout 5 s. For each fault: what the caller receives, how long it took, and how many calls
each deployment got. Not a benchmark: one run per fault, timings are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

import msgspec

from bench.fake_upstream import FakeUpstream, Reply
from models.schema import Capabilities, ModelEntry, Price, Route
from router.breaker import Breakers
from router.candidate import Candidate
from router.dispatch import Dispatcher
from router.errors import DispatchError
from router.providers import ProviderConfig, build_provider
from router.providers.config import BreakerConfig
from router.types import ChatRequest, FunctionCall, Message, ToolCall

TOKENS = [f"tok{i:02d} " for i in range(60)]
FULL = "".join(TOKENS)
TIMEOUTS = {"connect": 1.0, "read": 5.0, "total": 30.0, "ttft": 2.0, "stall": 2.0}
RETRIES = {"attempts": 3, "backoff_base": 0.05, "backoff_max": 0.5}
CALL = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))


def cand(provider: str, model: str, *, window: int = 128_000, prefill: bool = False) -> Candidate:
    entry = ModelEntry(id=model, vendor="bench", price=Price(input=1.0, output=2.0), context_window=window,
                       max_output=4096, routes=(Route(provider=provider, model=model),),
                       capabilities=Capabilities(assistant_prefill=prefill))
    return Candidate(model=entry, route=entry.routes[0])


A, B, C = cand("a", "model-a"), cand("b", "model-b"), cand("c", "model-c")
FAULTS: list[tuple[str, dict[str, list[Reply]], list[Candidate], bool]] = [
    ("healthy", {}, [A, B], True),
    ("missing [DONE] sentinel", {"model-a": [Reply(text=FULL, no_done=True)]}, [A, B], True),
    ("silent accept (stream)", {"model-a": [Reply(delay=60)]}, [A, B], True),
    ("silent accept (non-stream)", {"model-a": [Reply(delay=60)]}, [A, B], False),
    ("slow first token (role, then 60 s)", {"model-a": [Reply(text=FULL, stall_after=1, stall_for=60)]}, [A, B], True),
    ("503 x3, then fallback", {"model-a": [Reply.error_status(503)] * 3}, [A, B], True),
    ("cut after 40/60 tokens, chunk boundary", {"model-a": [Reply(text=FULL, cut_after=21)],
                                                "model-b": [Reply(text=FULL, continues=True)]}, [A, B], True),
    ("cut after 40/60 tokens, prefill fallback", {"model-a": [Reply(text=FULL, cut_after=21)],
                                                  "model-b": [Reply(text=FULL, continues=True)]},
     [A, cand("b", "model-b", prefill=True)], True),
    ("cut mid-event", {"model-a": [Reply(text=FULL, cut_after=21, cut_mid=True)],
                       "model-b": [Reply(text=FULL, continues=True)]}, [A, B], True),
    ("stall after content", {"model-a": [Reply(text=FULL, stall_after=21, stall_for=60)],
                             "model-b": [Reply(text=FULL, continues=True, overlap=9)]}, [A, B], True),
    ("one malformed event", {"model-a": [Reply(text=FULL, bad_events=(5,))]}, [A, B], True),
    ("three malformed events", {"model-a": [Reply(text=FULL, bad_events=(3, 4, 5))],
                                "model-b": [Reply(text=FULL, continues=True)]}, [A, B], True),
    ("fallback rejects prefill (no 3rd)", {"model-a": [Reply(text=FULL, cut_after=21)],
                                           "model-b": [Reply(text=FULL, continues=True, reject_prefill=True)]},
     [A, cand("b", "model-b", prefill=True)], True),
    ("fallback rejects prefill, 3rd continues", {"model-a": [Reply(text=FULL, cut_after=21)],
                                                 "model-b": [Reply(text=FULL, continues=True, reject_prefill=True)],
                                                 "model-c": [Reply(text=FULL, continues=True)]},
     [A, cand("b", "model-b", prefill=True), C], True),
    ("fallback with a smaller window", {"model-a": [Reply(text=FULL, cut_after=21)]},
     [A, cand("b", "model-b", window=60)], True),
    ("tool call cut mid-arguments", {"model-a": [Reply(tool_calls=[CALL], cut_after=2)]}, [A, B], True),
]


def providers(up: FakeUpstream, breaker: dict[str, Any] | None = None) -> Dispatcher:
    built = {}
    for name in "abc":
        raw = {"name": name, "kind": "openai", "base_url": up.url + "/v1", "timeouts": TIMEOUTS, "retries": RETRIES,
               "breaker": breaker or {}}
        built[name] = build_provider(msgspec.convert(raw, ProviderConfig))
    return Dispatcher(built, Breakers({n: msgspec.convert(breaker or {}, BreakerConfig) for n in "abc"}))


def request(stream: bool) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="Count to sixty.")], stream=stream or None)


async def one(up: FakeUpstream, name: str, script: dict[str, list[Reply]], cands: list[Candidate],
              stream: bool) -> None:
    up.reset()
    for model, replies in script.items():
        up.script(*replies, model=model)
    dispatcher = providers(up)
    started = time.perf_counter()
    text, outcome, usage, cost = "", "", None, 0.0
    try:
        if stream:
            result = await dispatcher.stream(request(True), cands)
            try:
                async for chunk in result:
                    text += "".join(c.delta.content or "" for c in chunk.choices)
                outcome = "complete" + (" (continued)" if result.continued else "")
            except DispatchError as exc:
                outcome = f"error event: {type(exc).__name__} ({result.error.kind})"  # type: ignore[union-attr]
            usage, cost = result.usage, result.cost_usd or 0.0
        else:
            done = await dispatcher.complete(request(False), cands)
            text, outcome = done.response.choices[0].message.content or "", "complete"
            usage, cost = done.response.usage, done.cost_usd
    except DispatchError as exc:
        outcome = f"{type(exc).__name__}"
    elapsed = time.perf_counter() - started
    calls = Counter(str(r.body["model"]).removeprefix("model-") for r in up.requests)
    whole = "60/60 once" if text == FULL else ("canned answer" if text == up.answer else f"{len(text) // 6} tokens")
    tokens = f"{usage.prompt_tokens}+{usage.completion_tokens}" if usage else "-"
    print(f"{name:<42} {outcome:<44} {whole:<13} {elapsed * 1000:8.0f} ms  calls {dict(calls)}  "
          f"tokens {tokens}  ${cost:.8f}")
    await dispatcher.aclose()


async def outage(up: FakeUpstream, seconds: float, cooldown: float, clients: int) -> None:
    """The primary fails every call for ``seconds`` while ``clients`` keep streaming through dispatch."""
    up.reset()
    dispatcher = providers(up, {"consecutive_failures": 3, "cooldown": cooldown})
    up.script(*[Reply.error_status(503, "down")] * 1_000_000, model="model-a")
    t0 = time.monotonic()
    served: list[tuple[float, str, bool]] = []
    probe_times: list[float] = []
    opened: list[float] = []

    async def client() -> None:
        while time.monotonic() - t0 < seconds + 3 * cooldown:
            result = await dispatcher.stream(request(True), [A, B])
            ok = True
            try:
                async for _ in result:
                    pass
            except DispatchError:
                ok = False
            served.append((time.monotonic() - t0, result.candidate.deployment, ok))
            if not opened and dispatcher.breakers.states().get("a/model-a") == "open":
                opened.append(time.monotonic() - t0)
                up.requests.clear()
            await asyncio.sleep(0.02)

    async def recover() -> None:
        await asyncio.sleep(seconds)
        probe_times.extend([0.0] * sum(1 for r in up.requests if r.body["model"] == "model-a"))
        up.unscript("model-a")

    await asyncio.gather(recover(), *(client() for _ in range(clients)))
    during = [s for s in served if s[0] < seconds]
    back = [t for t, d, _ in served if d == "a/model-a" and t >= seconds]
    print(f"\noutage of {seconds:.0f} s, cool-down {cooldown:.1f} s, {clients} clients streaming:")
    print(f"  requests during the outage: {len(during)}, answered {sum(ok for *_, ok in during)}, "
          f"served by the primary {sum(d == 'a/model-a' for _, d, _ in during)}")
    print(f"  circuit opened at {opened[0]:.2f} s; calls reaching the primary while open: {len(probe_times)} "
          f"(at most one per cool-down: {int((seconds - opened[0]) / cooldown) + 1})")
    print(f"  traffic back on the primary {back[0] - seconds:.2f} s after it recovered" if back
          else "  traffic never returned to the primary")
    await dispatcher.aclose()


async def main(args: argparse.Namespace) -> None:
    with FakeUpstream(answer=FULL) as up:
        for name, script, cands, stream in FAULTS:
            await one(up, name, script, cands, stream)
        if args.outage > 0:
            await outage(up, args.outage, args.cooldown, args.clients)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=60.0, help="seconds of primary outage (0: skip)")
    parser.add_argument("--cooldown", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    asyncio.run(main(parser.parse_args()))
