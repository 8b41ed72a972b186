"""The load generator: clients that talk to the server over HTTPS as customers and a SaaS backend do
(streaming /v1/chat/completions_qos with user_id through a "*" key, or /v1/chat/completions with
each user's own key), closed loop (N concurrent) or open loop (Poisson at a rate, or bursts), and a
poller that reads /admin/qos every half second. Bounded: every client stops issuing at the phase's
end or its max_requests, in-flight requests get drain_timeout_s, and what is left then is cut."""
import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import aiohttp

WORDS = ("time year people way day man thing woman life child world school state family student group "
         "country problem hand part place case week company system program question work government "
         "number night point home water room mother area money story fact month lot right study book "
         "eye job word business issue side kind head house service friend father power hour game line "
         "end member law car city community name president team minute idea kid body information back "
         "parent face others level office door health person art war history party result change morning "
         "reason research girl guy moment air teacher force education").split()
TEMPLATE_TOKENS = 30  # what the default model's chat template adds around one user message


def prompt_text(seed, index, tokens):
    """A deterministic prompt of about `tokens` tokens (the server reports the exact count)."""
    rng = random.Random(seed * 1_000_003 + index)
    n = max(1, tokens - TEMPLATE_TOKENS)
    return f"Request {index}: " + " ".join(rng.choice(WORDS) for _ in range(n))


@dataclass
class Record:
    rid: int
    phase: str
    client: str
    user: str
    group: str
    route: str
    prompt_index: int
    max_tokens: int
    temperature: float
    sent: float = 0.0
    first: float = None
    chunks: list = field(default_factory=list)  # arrival time of each chunk that carried text
    done: float = None
    status: int = None
    finish: str = ""
    error: str = ""
    retry_after: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    text: str = ""

    @property
    def ok(self):
        return self.status == 200 and not self.error and self.finish in ("length", "stop")


class Runner:
    """One server, one run's records and polls; times are seconds since `t0` (time.monotonic)."""

    def __init__(self, server, group_of, keep_text):
        self.server = server
        self.group_of = group_of
        self.keep_text = keep_text
        self.t0 = time.monotonic()
        self.records = []
        self.polls = []  # (t, /admin/qos usage object)
        self.session = None
        self.skipped = 0  # open-loop arrivals not sent because too many were in flight
        self._in_flight = 0

    def now(self):
        return time.monotonic() - self.t0

    async def __aenter__(self):
        conn = aiohttp.TCPConnector(limit=0, ssl=self.server.ssl)
        self.session = aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None, sock_read=600))
        return self

    async def __aexit__(self, *exc):
        await self.session.close()

    # --- one request ---------------------------------------------------------------------------
    async def send(self, rec, prompt):
        path = "/v1/chat/completions_qos" if rec.route == "chat_qos" else "/v1/chat/completions"
        key = self.server.keys["any_user"] if rec.route == "chat_qos" else self.server.keys["users"][rec.user]
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": rec.max_tokens,
                "temperature": rec.temperature, "stream": True, "stream_options": {"include_usage": True},
                "ignore_eos": True}
        if rec.route == "chat_qos":
            body["user_id"] = rec.user
        self.records.append(rec)
        self._in_flight += 1
        rec.sent = self.now()
        try:
            async with self.session.post(self.server.url + path, json=body,
                                         headers={"Authorization": f"Bearer {key}"}) as resp:
                rec.status = resp.status
                if resp.status != 200:
                    rec.retry_after = resp.headers.get("Retry-After", "")
                    text = await resp.text()
                    try:
                        rec.error = json.loads(text)["error"].get("code") or "error"
                    except (ValueError, KeyError, TypeError, AttributeError):
                        rec.error = text[:200] or "error"
                    return
                async for line in resp.content:
                    if not line.startswith(b"data: "):
                        continue
                    payload = line[6:].strip()
                    if payload == b"[DONE]":
                        break
                    t = self.now()
                    obj = json.loads(payload)
                    if "error" in obj:
                        rec.error = obj["error"].get("code") or obj["error"].get("message", "stream error")
                        break
                    if obj.get("usage"):
                        rec.prompt_tokens = obj["usage"].get("prompt_tokens", 0)
                        rec.completion_tokens = obj["usage"].get("completion_tokens", 0)
                    for ch in obj.get("choices", []):
                        if rec.first is None:
                            rec.first = t
                        content = (ch.get("delta") or {}).get("content") or ""
                        if content:
                            rec.chunks.append(t)
                            if self.keep_text:
                                rec.text += content
                        if ch.get("finish_reason"):
                            rec.finish = ch["finish_reason"]
        except asyncio.CancelledError:
            rec.error = "cut at the drain timeout"
            raise
        except (aiohttp.ClientError, OSError, ValueError) as e:
            rec.error = f"{type(e).__name__}: {e}"
        finally:
            rec.done = self.now()
            self._in_flight -= 1

    # --- clients ---------------------------------------------------------------------------------
    def _new_record(self, phase, client, user, index, rng):
        lo, hi = client["max_tokens"]
        max_tokens = (random.Random(client["seed"] * 7919 + index).randint(lo, hi) if "prompt_set" in client
                      else rng.randint(lo, hi))
        return Record(len(self.records) + 1, phase, client["name"], user, self.group_of(user), client["route"],
                      index, max_tokens, client["temperature"])

    def _prompt(self, client, index, rng):
        lo, hi = client["prompt_tokens"]
        tokens = (random.Random(client["seed"] * 104729 + index).randint(lo, hi) if "prompt_set" in client
                  else rng.randint(lo, hi))
        return prompt_text(client["seed"], index, tokens)

    async def closed_loop(self, phase, client, slot, start, stop, budget):
        """One of the client's `concurrency` streams: the next request as soon as one ends."""
        rng = random.Random(client["seed"] * 31 + slot)
        user = client["users"][slot % len(client["users"])]
        await asyncio.sleep(max(0.0, start - self.now()))
        n = 0
        while self.now() < stop and budget[0] > 0:
            budget[0] -= 1
            index = (n * client["concurrency"] + slot) if "prompt_set" not in client else rng.randrange(client["prompt_set"])
            n += 1
            rec = self._new_record(phase, client, user, index, rng)
            await self.send(rec, self._prompt(client, index, rng))
            if rec.status == 429:  # back off as told, within the phase
                await asyncio.sleep(min(float(rec.retry_after or 1), max(0.0, stop - self.now())))
            elif rec.error and rec.status is None:
                await asyncio.sleep(0.1)  # a transport error: do not spin

    async def open_loop(self, phase, client, start, stop, budget, tasks):
        """Poisson arrivals at rate_per_s, or bursts of `size` every `every_s`; each request on its own task."""
        rng = random.Random(client["seed"])
        users = client["users"]
        burst = client.get("burst")
        t, k, n = start, 0, 0
        while budget[0] > 0:
            t = start + k * burst["every_s"] if burst else t + rng.expovariate(client["rate_per_s"])
            k += 1
            if t >= stop:
                return
            await asyncio.sleep(max(0.0, t - self.now()))
            for _ in range(burst["size"] if burst else 1):
                if budget[0] <= 0:
                    return
                budget[0] -= 1
                user = users[n % len(users)] if burst else rng.choice(users)
                index = n if "prompt_set" not in client else rng.randrange(client["prompt_set"])
                n += 1
                if self._in_flight >= 4096:
                    self.skipped += 1
                    continue
                rec = self._new_record(phase, client, user, index, rng)
                tasks.append(asyncio.ensure_future(self.send(rec, self._prompt(client, index, rng))))

    async def poll(self, interval=0.5):
        loop = asyncio.get_running_loop()
        while True:
            t = self.now()
            try:
                report = await loop.run_in_executor(None, self.server.admin_qos)
                self.polls.append((t, report["usage"]))
            except OSError:
                pass
            await asyncio.sleep(max(0.0, interval - (self.now() - t)))

    async def run_phase(self, phase, on_action):
        """Runs one phase; returns (start, end) of its offered load, in run seconds."""
        start = self.now()
        stop = start + phase["duration_s"]
        tasks, loops = [], []
        for c in phase["clients"]:
            c_start = start + c["start_s"]
            c_stop = min(stop, start + c.get("stop_s", phase["duration_s"]))
            budget = [c["max_requests"]]
            if "concurrency" in c:
                loops += [asyncio.ensure_future(self.closed_loop(phase["name"], c, s, c_start, c_stop, budget))
                          for s in range(c["concurrency"])]
            else:
                loops.append(asyncio.ensure_future(self.open_loop(phase["name"], c, c_start, c_stop, budget, tasks)))
        loop = asyncio.get_running_loop()
        for a in phase["actions"]:
            async def act(a=a):
                await asyncio.sleep(max(0.0, start + a["at_s"] - self.now()))
                await loop.run_in_executor(None, on_action, a, self.now())
            loops.append(asyncio.ensure_future(act()))
        await asyncio.sleep(max(0.0, stop - self.now()))
        drain_end = stop + phase["drain_timeout_s"]
        pending = [t for t in loops + tasks if not t.done()]
        while pending and self.now() < drain_end:
            _, pending = await asyncio.wait(pending, timeout=max(0.01, drain_end - self.now()))
            pending = [t for t in loops + tasks if not t.done()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*loops, *tasks, return_exceptions=True)
        for t in loops:
            if not t.cancelled() and t.exception():
                raise t.exception()
        return start, stop
