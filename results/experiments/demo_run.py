"""The README's experiment demo: 1000 requests in-process (Engine + the loopback fake upstream) through a
50/50 experiment whose arm b is a model priced 20 % lower that answers 5 ms later. Writes
/tmp/h18demo/thrifty.yaml and its data dir; then:

    thrifty experiment report cheaper-model --config /tmp/h18demo/thrifty.yaml --png report.png
    thrifty whatif --model gpt-4o-mini --since 7d --config /tmp/h18demo/thrifty.yaml
"""
import asyncio, random, sys, yaml
from pathlib import Path
from bench.fake_upstream import FakeUpstream, Reply, usage
from engine import Engine
MODELS = [
    {"id": "exp-a", "vendor": "test", "price": {"input": 1.0, "output": 4.0}, "context_window": 32000,
     "max_output": 4096, "routes": [{"provider": "fake", "model": "exp-a"}]},
    {"id": "exp-b", "vendor": "test", "price": {"input": 0.8, "output": 3.2}, "context_window": 32000,
     "max_output": 4096, "routes": [{"provider": "fake", "model": "exp-b"}]},
]
up = FakeUpstream(record=False).start()
root = Path("/tmp/h18demo")
cfg = {"data_dir": str(root / "data"),
       "providers": [{"name": "fake", "kind": "openai-compatible", "base_url": up.url + "/v1"}],
       "catalog": {"models": MODELS}, "cache": {"encoder": "hashing", "mode": "off"},
       "experiments": [{"name": "cheaper-model", "control": "a", "stickiness": "user",
                        "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "model": "exp-b"}],
                        "guard": {"max_error_rate": 0.2, "window_s": 60, "min_requests": 20}}]}
(root / "thrifty.yaml").write_text(yaml.safe_dump(cfg))
rng = random.Random(1)
n = 1000
for model, extra in (("exp-a", 0.0), ("exp-b", 0.005)):
    up.script(*[Reply(usage=usage(rng.randint(50, 150), rng.randint(20, 200)), delay=rng.uniform(0.010, 0.020) + extra)
                for _ in range(n)], model=model)
e = Engine.from_config(cfg)
async def main():
    sem = asyncio.Semaphore(4)
    async def one(i):
        async with sem:
            await e.complete({"model": "exp-a", "user": f"user-{i % 400}", "messages": [{"role": "user", "content": "hello"}]})
    await asyncio.gather(*(one(i) for i in range(n)))
    await e.flush()
asyncio.run(main())
e.close(); up.stop()
