"""SMS benchmark through a real Kannel: the engine against a bare aiohttp loop, in one run.

Kannel (bearerbox + smsbox + the fake SMSC, started as in tests/sms/kannel.py) takes N
Chinese messages of 3 parts each, with a delivery report per message. The bare loop
sends the same N `GET cgi-bin/sendsms` (same text, same dlr-mask, reports to a counting
server) with the same concurrency and nothing else. The engine is a real
`publisher worker` whose sms channel points at Kannel, with the reports going to the
app (`make_app`, no worker) served in its own process, as in production.

    .venv/bin/python bench/sms.py --n 2000
    .venv/bin/python bench/sms.py --n 2000 --database postgresql://root@127.0.0.1:5432/test
    .venv/bin/python bench/sms.py --n 2000 --cap    # with a daily spend cap (counting)

Needs root (Kannel runs as user kannel via setpriv) and Debian's kannel + kannel-extras.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.sms import kannel as kn  # noqa: E402 - after the path is set

DATA_KEY = "YmVuY2gta2V5LTMyLWJ5dGVzLWxvbmctLi4uLi4uLi4="
CONCURRENCY = 50
TITLE = "关于上余镇2026年冬季农田水利建设的通知"
SUMMARY = (
    "各村、各有关单位：为做好冬季农田水利建设工作，确保工程质量和进度，现将有关事项通知如下。"
    "请各村于十二月十日前上报计划，镇农办将组织验收。"
)


def write_config(tmp: Path, k: kn.Kannel, database: str, cap: bool) -> Path:
    """config.yaml with the sms channel on Kannel `k` and reports to k.app_port."""
    import yaml

    tree = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    tree["storage"] = {
        "url": database,
        "attachments_dir": str(tmp / "attachments"),
        "feeds_dir": str(tmp / "feeds"),
    }
    channels = tree.setdefault("channels", {})
    for name in ("portal", "rss", "email", "board"):
        channels[name] = {**(channels.get(name) or {}), "enabled": False, "endpoints": []}
    channels["sms"] = {
        **(channels.get("sms") or {}),
        "quiet_hours": None,
        "concurrency": CONCURRENCY,
        "settings": {
            # --cap: a daily cap never reached, to measure what counting costs
            "gateways": [k.gateway(**({"daily_segment_cap": 10**9} if cap else {}))],
            "callback_base_url": f"http://127.0.0.1:{k.app_port}",
        },
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def env_for(config: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PUBLISHER_CONFIG": str(config),
            "PUBLISHER__SECURITY__DATA_KEY": DATA_KEY,
            "PUBLISHER__SECURITY__DATA_KEY_FILE": "",
            "PUBLISHER__DELIVERY__POLL_SECONDS": "0.2",
            "PUBLISHER__DELIVERY__BATCH_SIZE": "500",
            "PUBLISHER__SCHEDULER__SWEEP_SECONDS": "5",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


# -- phases (each in its own subprocess) -------------------------------------------------------


async def phase_prepare(n: int) -> dict[str, Any]:
    from channels.base import AdapterContext
    from channels.sms import SmsChannel, sms_settings
    from publisher.config import load_config
    from publisher.content import ItemCreate, content_from
    from publisher.models import Action, Role
    from publisher.recipients import Consent, Recipients, import_subscribers
    from publisher.store import open_store
    from publisher.store.sql import Actor
    from publisher.web.preview import item_subject

    config = load_config(os.environ["PUBLISHER_CONFIG"])
    store = await open_store(config)
    numbers = [f"+86138{i:08d}" for i in range(n)]
    await import_subscribers(
        Recipients(store), "sms", numbers, Consent("import", "bench consent", "bench")
    )
    content = content_from(
        ItemCreate.model_validate(
            {
                "title": TITLE,
                "summary": SUMMARY,
                "body": SUMMARY,
                "category": "nync",
                "written_at": "2026-11-20",
                "channels": ["sms"],
                # a few seconds ahead: the worker's scheduler publishes it
                "publish_at": time.strftime(
                    "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 4)
                ),
            }
        ),
        config,
    )
    editor, reviewer = Actor("bench-editor", Role.EDITOR), Actor("bench-reviewer", Role.REVIEWER)
    item = await store.create_item(content, actor=editor)
    await store.transition(item.id, Action.SUBMIT, actor=editor)
    item = await store.transition(item.id, Action.APPROVE, actor=reviewer)
    adapter = SmsChannel(sms_settings(config), config.site, AdapterContext(config, store))
    text = adapter.compose_for(item_subject(config, item), adapter.primary)
    await store.close()
    return {"item_id": item.id, "text": text.text, "parts": text.segments.parts}


async def phase_app(port: int) -> None:
    """The app without a worker: /sms/dlr records the reports in the store."""
    from aiohttp import web

    from publisher.config import load_config
    from publisher.store import open_store
    from publisher.web import make_app

    config = load_config(os.environ["PUBLISHER_CONFIG"])
    store = await open_store(config, migrate=False)
    runner = web.AppRunner(make_app(config, store), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(json.dumps({"ready": True}), flush=True)
    await stop.wait()
    await runner.cleanup()
    await store.close()


async def phase_dlr_sink(port: int) -> None:
    """For the bare loop: counts reports, answers the count on /count."""
    from aiohttp import web

    seen: dict[str, float] = {}

    async def dlr(request: web.Request) -> web.Response:
        seen[request.query.get("id", "")] = time.time()
        return web.Response(text="ok")

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"n": len(seen), "last": max(seen.values(), default=0.0)})

    app = web.Application()
    app.router.add_get("/dlr", dlr)
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(json.dumps({"ready": True}), flush=True)
    await stop.wait()
    await runner.cleanup()


async def phase_bare(n: int, url: str, dlr_port: int, text: str, run: str) -> dict[str, Any]:
    """The same N sendsms GETs with the same concurrency; until each got its report."""
    import aiohttp

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    accepted = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            nonlocal accepted
            while not queue.empty():
                i = queue.get_nowait()
                params = {
                    "username": kn.USERNAME,
                    "password": kn.PASSWORD,
                    "from": kn.SENDER,
                    "to": f"139{i:08d}",
                    "text": text,
                    "charset": "UTF-8",
                    "coding": "2",
                    "dlr-mask": "19",
                    "dlr-url": f"http://127.0.0.1:{dlr_port}/dlr?id={run}-{i}&status=%d&ts=%T",
                }
                async with session.get(url, params=params) as resp:
                    await resp.read()
                    accepted += resp.status == 202

        t0 = time.time()
        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
        sent_at = time.time()
        count_url = f"http://127.0.0.1:{dlr_port}/count"
        while True:
            async with session.get(count_url) as resp:
                got = await resp.json()
            if got["n"] >= n * (run_index(run) + 1) or time.time() - sent_at > 120:
                break
            await asyncio.sleep(0.05)
    return {
        "accepted": accepted,
        "accepted_seconds": sent_at - t0,
        "reported_seconds": got["last"] - t0,
    }


def run_index(run: str) -> int:
    return int(run.rsplit("-", 1)[-1])


async def phase_wait(item_id: str, n: int) -> dict[str, Any]:
    """Watch the ledger from outside until every row is final; report the spans."""
    import sqlalchemy as sa

    from publisher.config import load_config
    from publisher.ledger import FINAL
    from publisher.store import open_store
    from publisher.store import schema as t

    config = load_config(os.environ["PUBLISHER_CONFIG"])
    store = await open_store(config, migrate=False)
    d, e = t.deliveries, t.delivery_events
    final = [s.value for s in FINAL if s.value != "sent"]  # a report comes for each
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        async with store.read() as conn:
            done = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(d)
                .where(d.c.item_id == item_id, d.c.state.in_(final))
            )
        if done == n:
            break
        await asyncio.sleep(0.2)
    async with store.read() as conn:
        first = await conn.scalar(
            sa.select(sa.func.min(d.c.created_at)).where(d.c.item_id == item_id)
        )
        last_sent = await conn.scalar(
            sa.select(sa.func.max(e.c.at))
            .select_from(e.join(d, d.c.id == e.c.delivery_id))
            .where(d.c.item_id == item_id, e.c.to_state == "sent")
        )
        last_report = await conn.scalar(
            sa.select(sa.func.max(d.c.updated_at)).where(d.c.item_id == item_id)
        )
        rows = (
            await conn.execute(
                sa.select(d.c.state, sa.func.count())
                .where(d.c.item_id == item_id)
                .group_by(d.c.state)
            )
        ).all()
    await store.close()

    def seconds(value: Any) -> float:
        # naive UTC text on SQLite, aware on PostgreSQL: compared as UTC wall times
        when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return (
            when.astimezone(UTC).replace(tzinfo=None).timestamp()
            if when.tzinfo
            else (when.timestamp())
        )

    t0 = seconds(first)
    return {
        "accepted_seconds": seconds(last_sent) - t0,
        "reported_seconds": seconds(last_report) - t0,
        "states": {str(r[0]): int(r[1]) for r in rows},
    }


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def run_phase(name: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, *args],
        env=env, cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def start_phase(name: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """A long-running phase (a server); returns once it printed that it is ready."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--phase", name, *args],
        env=env, cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if '"ready"' not in line:
        proc.kill()
        raise SystemExit(f"phase {name} did not start")
    return proc


def stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--database", help="postgresql://… (default: a fresh SQLite file)")
    parser.add_argument("--cap", action="store_true", help="count segments (a cap never reached)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--item", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--text", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:  # inside a subprocess
        if args.phase == "app":
            asyncio.run(phase_app(args.port))
            return
        if args.phase == "dlrsink":
            asyncio.run(phase_dlr_sink(args.port))
            return
        if args.phase == "prepare":
            result = asyncio.run(phase_prepare(args.n))
        elif args.phase == "bare":
            result = asyncio.run(phase_bare(args.n, args.url, args.port, args.text, args.run))
        elif args.phase == "wait":
            result = asyncio.run(phase_wait(args.item, args.n))
        print(json.dumps(result, ensure_ascii=False))
        return

    why = kn.missing()
    if why is not None:
        raise SystemExit(f"Kannel cannot run: {why}")
    k = kn.start()
    procs: list[subprocess.Popen[Any]] = []
    dropdb = None
    try:
        with tempfile.TemporaryDirectory(prefix="gk-bench-sms-") as tmpdir:
            tmp = Path(tmpdir)
            if args.database:
                name = "gk_bench_" + uuid.uuid4().hex[:8]
                subprocess.run(
                    ["psql", args.database, "-qc", f"CREATE DATABASE {name}"], check=True
                )
                dropdb = (args.database, name)
                database = args.database.rsplit("/", 1)[0] + "/" + name
            else:
                database = f"sqlite:///{tmp}/bench.db"
            env = env_for(write_config(tmp, k, database, args.cap))
            prep = run_phase("prepare", env, "--n", str(args.n))
            dlr_port = kn.free_port()
            sink = start_phase("dlrsink", env, "--port", str(dlr_port))
            procs.append(sink)
            bare_args = ["--n", str(args.n), "--url", k.sendsms_url, "--port", str(dlr_port),
                         "--text", prep["text"]]  # fmt: skip
            bare = [run_phase("bare", env, *bare_args, "--run", "bare-0")]

            procs.append(start_phase("app", env, "--port", str(k.app_port)))
            command = [sys.executable, "-m", "publisher", "worker"]
            worker = subprocess.Popen(
                command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            procs.append(worker)
            waited = run_phase("wait", env, "--n", str(args.n), "--item", prep["item_id"])
            stop_process(worker)
            # the bare loop again after the engine: the baseline is the mean of both runs
            bare.append(run_phase("bare", env, *bare_args, "--run", "bare-1"))
    finally:
        for proc in procs:
            stop_process(proc)
        kn.stop(k)
        if dropdb:
            subprocess.run(
                ["psql", dropdb[0], "-qc", f"DROP DATABASE {dropdb[1]} WITH (FORCE)"], check=False
            )
    n = args.n
    bare_acc = [n / b["accepted_seconds"] for b in bare]
    bare_rep = [n / b["reported_seconds"] for b in bare]
    eng_acc = n / waited["accepted_seconds"]
    eng_rep = n / waited["reported_seconds"]
    print(
        json.dumps(
            {
                "n": n,
                "store": "postgresql" if args.database else "sqlite",
                "concurrency": CONCURRENCY,
                "spend_cap_counting": args.cap,
                "parts_per_message": prep["parts"],
                "engine_accepted_msgs_per_s": round(eng_acc),
                "engine_reported_msgs_per_s": round(eng_rep),
                "bare_accepted_msgs_per_s": round(mean(bare_acc)),
                "bare_reported_msgs_per_s": round(mean(bare_rep)),
                "bare_runs_accepted_msgs_per_s": [round(r) for r in bare_acc],
                "ratio_accepted": round(eng_acc / mean(bare_acc), 2),
                "ratio_reported": round(eng_rep / mean(bare_rep), 2),
                "engine_states": waited["states"],
                "bare_accepted": [b["accepted"] for b in bare],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
