"""Open-loop HTTP load at a fixed rate (run as its own process): request i starts at t0 + i / rate.

Latency counts from the instant a request was due, so a server that falls behind shows its
queueing (no coordinated omission); ``service`` latency counts from the actual send. Prints
one JSON object.

    python -m benchkit.loadgen --url http://127.0.0.1:8000 --token T --kind portrait --rate 1000 --seconds 30 --users 1000000
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import click

from benchkit.stats import summary

#: high-value and potential users at churn risk 0.7 or more: the audience ops act on, first page
AUDIENCE_QUERY = {
    "filter": {"layers": ["high_value", "potential"], "churn_risk": {"min": 0.7}},
    "fields": ["rfm.layer", "churn.risk", "profile.region"],
    "limit": 100,
}


def synthetic_user(index: int, users: int) -> str:
    """The id ``synthetic_portraits`` gives portrait ``index`` of ``users``."""
    return f"u{index:0{len(str(users))}d}"


async def load(url: str, token: str, kind: str, rate: float, seconds: float, users: int, max_in_flight: int,
               timeout_s: float) -> dict:
    import aiohttp

    rng = random.Random(3)
    latencies: list[float] = []
    service: list[float] = []
    statuses: dict[str, int] = {}
    skipped = 0
    in_flight = 0
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

        async def one(due: float) -> None:
            nonlocal in_flight
            sent = time.monotonic()
            try:
                if kind == "portrait":
                    request = session.get(f"{url}/v1/users/{synthetic_user(rng.randrange(users), users)}/portrait")
                else:
                    request = session.post(f"{url}/v1/audiences/query", json=AUDIENCE_QUERY)
                async with request as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                status = type(error).__name__
            done = time.monotonic()
            in_flight -= 1
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                latencies.append(done - due)
                service.append(done - sent)

        tasks = []
        start = time.monotonic()
        total = int(rate * seconds)
        if rate == 0:  # closed loop, one request at a time: the unloaded latency
            total = int(seconds)
            for _ in range(total):
                in_flight += 1
                await one(time.monotonic())
        for i in range(total if rate else 0):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= max_in_flight:
                skipped += 1  # the server is this far behind: the request counts as failed
                continue
            in_flight += 1
            tasks.append(asyncio.create_task(one(due)))
        sent_seconds = time.monotonic() - start
        await asyncio.gather(*tasks)
    ok = statuses.get("200", 0)
    return {
        "kind": kind,
        "target_rate": rate,
        "seconds": seconds,
        "requests": total,
        "achieved_rate": round(ok / max(sent_seconds, seconds if rate else 0.001), 1),
        "statuses": statuses,
        "skipped_over_in_flight_limit": skipped,
        "latency_ms": summary(latencies, 1000),
        "service_ms": summary(service, 1000),
    }


@click.command()
@click.option("--url", required=True)
@click.option("--token", required=True)
@click.option("--kind", type=click.Choice(["portrait", "audience"]), required=True)
@click.option("--rate", default=1000.0, show_default=True, help="Requests per second; 0: one at a time")
@click.option("--seconds", default=30.0, show_default=True, help="Length of the phase; with --rate 0 the number of requests")
@click.option("--users", default=1_000_000, show_default=True)
@click.option("--max-in-flight", default=500, show_default=True)
@click.option("--timeout", "timeout_s", default=10.0, show_default=True)
def main(url, token, kind, rate, seconds, users, max_in_flight, timeout_s) -> None:
    """Run one load phase and print its figures as JSON."""
    figures = asyncio.run(load(url, token, kind, rate, seconds, users, max_in_flight, timeout_s))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
