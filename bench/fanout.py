"""Fan-out benchmark: the engine against a bare asyncio loop, in one run.

`--channel sms` (the default): one item is fanned out to N SMS subscribers through a
channel whose far end is a loopback HTTP server that only counts (bench/sink.py, its
own process). The bare baseline sends the same N requests with the same client, body
size and concurrency, with no store and no ledger.

`--channel email`: the same item goes to N email subscribers through the real email
channel (channels/mail.py) to a loopback aiosmtpd server that only counts messages
(bench/smtp_sink.py, its own process). The bare baseline is aiosmtplib alone: the
message rendered once, N copies sent over the same number of persistent connections
as the channel's pool (`--connections`, channels.email.settings.connections).

The figure to watch is engine/bare.

    .venv/bin/python bench/fanout.py --n 10000
    .venv/bin/python bench/fanout.py --n 100000 --workers 2 \\
        --database postgresql://root@127.0.0.1:5432/test
    .venv/bin/python bench/fanout.py --channel email --n 10000

Each phase runs in a fresh subprocess, so peak RSS is that phase's own.

`BENCH_SMS_ADAPTER=bench.null_channel:NullChannel` swaps the sms adapter for one that
sends nothing: the engine's own cost, without the network, for diagnosis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA_KEY = "YmVuY2gta2V5LTMyLWJ5dGVzLWxvbmctLi4uLi4uLi4="
CONCURRENCY = 50
#: channels.email.settings.connections' default
CONNECTIONS = 4
SENDER = "gongkai@shangyu.example.gov.cn"
TITLE = "关于冬季农田水利建设的通知"
BODY = "各村：为做好冬季农田水利建设工作，现将有关事项通知如下。"


def bench_address(channel: str, i: int) -> str:
    return f"+86138{i:08d}" if channel == "sms" else f"r{i:07d}@example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(
    database: str, url: str, tmp: Path, concurrency: int, smtp: tuple[int, int] | None = None
) -> dict[str, str]:
    """The workers' environment: the sms channel posts to `url`, or with `smtp` (port,
    connections) the email channel sends to the SMTP sink on that port."""
    overrides = {
        "STORAGE__URL": database,
        "STORAGE__ATTACHMENTS_DIR": str(tmp / "attachments"),
        "STORAGE__FEEDS_DIR": str(tmp / "feeds"),
        "SECURITY__DATA_KEY": DATA_KEY,
        "SECURITY__DATA_KEY_FILE": "",
        "CHANNELS__SMS__ADAPTER": "tests.fakes:LoopbackHttpChannel",
        "CHANNELS__SMS__SETTINGS__URL": url,
        "CHANNELS__SMS__QUIET_HOURS": "null",
        "CHANNELS__SMS__CONCURRENCY": str(concurrency),
        "DELIVERY__POLL_SECONDS": "0.2",
        "DELIVERY__BATCH_SIZE": "500",
        "SCHEDULER__SWEEP_SECONDS": "5",
    }
    if smtp is not None:
        port, connections = smtp
        # the email channel keeps its own concurrency (16): the pool is what bounds it
        overrides |= {
            "CHANNELS__EMAIL__SETTINGS__HOST": "127.0.0.1",
            "CHANNELS__EMAIL__SETTINGS__PORT": str(port),
            "CHANNELS__EMAIL__SETTINGS__SECURITY": "none",
            "CHANNELS__EMAIL__SETTINGS__FROM_ADDRESS": SENDER,
            "CHANNELS__EMAIL__SETTINGS__LOCAL_HOSTNAME": "publisher.bench",
            "CHANNELS__EMAIL__SETTINGS__CONNECTIONS": str(connections),
        }
    env = dict(os.environ)
    env.update({f"PUBLISHER__{k}": v for k, v in overrides.items()})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("BENCH_PYTHONPATH", "")
    if os.environ.get("BENCH_SMS_ADAPTER"):
        env["PUBLISHER__CHANNELS__SMS__ADAPTER"] = os.environ["BENCH_SMS_ADAPTER"]
    return env


# -- phases (each in its own subprocess) ------------------------------------------


async def phase_prepare(n: int, channel: str) -> dict[str, float]:
    from publisher.config import load_config
    from publisher.content import ItemCreate, content_from
    from publisher.models import Action, Role
    from publisher.recipients import Consent, Recipients, import_subscribers
    from publisher.store import open_store
    from publisher.store.sql import Actor

    config = load_config(REPO / "config.yaml")
    store = await open_store(config)
    t0 = time.perf_counter()
    addresses = [bench_address(channel, i) for i in range(n)]
    await import_subscribers(
        Recipients(store), channel, addresses, Consent("import", "bench consent", "bench")
    )
    took = time.perf_counter() - t0
    content = content_from(
        ItemCreate.model_validate(
            {
                "title": TITLE,
                "body": BODY,
                "category": "nync",
                "written_at": "2026-11-20",
                "channels": [channel],
                # scheduled a few seconds ahead, so the worker's scheduler publishes it
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
    await store.transition(item.id, Action.APPROVE, actor=reviewer)
    await store.close()
    return {"import_seconds": took, "item_id": item.id}  # type: ignore[dict-item]


async def phase_wait(item_id: str, n: int, count_url: str) -> dict[str, float]:
    """Watch the store from outside until every row is final; report the fan-out's span."""
    import sqlalchemy as sa

    from publisher.config import load_config
    from publisher.ledger import FINAL
    from publisher.store import open_store
    from publisher.store import schema as t

    config = load_config(REPO / "config.yaml")
    store = await open_store(config, migrate=False)
    final = [s.value for s in FINAL]
    # watch the sink first (an HTTP GET costs the engine nothing), then the ledger
    import aiohttp

    async with aiohttp.ClientSession() as session:
        # (a diagnostic adapter, BENCH_SMS_ADAPTER, may send nothing to the sink)
        while not os.environ.get("BENCH_SMS_ADAPTER"):
            async with session.get(count_url) as resp:
                if int(await resp.text()) >= n:
                    break
            await asyncio.sleep(0.5)
    while True:
        async with store.read() as conn:
            done = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(t.deliveries)
                .where(t.deliveries.c.item_id == item_id, t.deliveries.c.state.in_(final))
            )
        if done == n:
            break
        await asyncio.sleep(0.2)
    async with store.read() as conn:
        first, last = (
            await conn.execute(
                sa.select(
                    sa.func.min(t.deliveries.c.created_at), sa.func.max(t.deliveries.c.updated_at)
                ).where(t.deliveries.c.item_id == item_id)
            )
        ).one()
        details = await conn.scalar(
            sa.select(t.audit_log.c.details).where(
                t.audit_log.c.item_id == item_id, t.audit_log.c.to_status == "published"
            )
        )
        # how many rows a turn carried: each turn stamps its claims with one time, and
        # the outcomes it records with another
        turns = {
            state: await conn.scalar(
                sa.select(sa.func.count(sa.distinct(t.delivery_events.c.at))).where(
                    t.delivery_events.c.to_state == state
                )
            )
            for state in ("sending", "sent")
        }
        sent = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(t.deliveries)
            .where(t.deliveries.c.item_id == item_id, t.deliveries.c.state == "sent")
        )
    await store.close()
    span = (
        t.UTCDateTime().process_result_value(last, None)
        - t.UTCDateTime().process_result_value(first, None)
    ).total_seconds()  # type: ignore[arg-type, operator]
    return {
        "span_seconds": span,
        "sent": sent,
        "rows_per_claim": round(n / max(1, turns["sending"] or 0), 1),
        "rows_per_record": round(n / max(1, turns["sent"] or 0), 1),
        "lateness_seconds": (details or {}).get("late_seconds"),
    }


async def phase_bare(n: int, url: str, concurrency: int) -> dict[str, float]:
    """The same N requests, same client and concurrency, nothing else."""
    import aiohttp

    body = json.dumps(
        {
            "to": "+8613800000000",
            "subject": "event:1",
            "kind": "published",
            "title": "关于冬季农田水利建设的通知",
            "url": "http://127.0.0.1:8080/items/x",
        },
        ensure_ascii=False,
    ).encode()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), connector=aiohttp.TCPConnector(limit=0)
    ) as session:

        async def one() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                async with session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json", "X-Delivery-Id": str(i)},
                ) as resp:
                    await resp.text()

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        took = time.perf_counter() - t0
    return {"seconds": took}


async def phase_bare_email(n: int, port: int, connections: int) -> dict[str, float]:
    """The same item's mail rendered once by the email channel, then N copies (one
    recipient each, as the channel sends) over `connections` persistent aiosmtplib
    connections: no store, no ledger, no per-resident links."""
    from datetime import UTC, datetime

    import aiosmtplib

    from channels.base import AdapterContext, Subject, Target
    from channels.mail import MailChannel, mail_settings
    from publisher.config import load_config
    from publisher.text import derive_summary, render_body

    config = load_config(REPO / "config.yaml")
    adapter = MailChannel(mail_settings(config), config.site, AdapterContext(config, None))  # type: ignore[arg-type]
    now = datetime.now(UTC)
    subject = Subject(
        key="event:1", kind="published", item_id="bench", revision=1, title=TITLE,
        summary=derive_summary(BODY, config.items.summary_chars), body=BODY,
        body_html=render_body(BODY), category="nync", category_name="农业农村",
        agency=config.site.agency, index_no="113308810026305088/2026-00001", doc_no=None,
        written_at=now, published_at=now, urgent=False,
        public_url=f"{config.site.public_base}/items/bench", site_name=config.site.name,
        event_at=now,
    )  # fmt: skip
    data = adapter.render(subject, Target("r:1", "email", bench_address("email", 0))).body
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def one(smtp: aiosmtplib.SMTP) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await smtp.sendmail(SENDER, [bench_address("email", i)], data)

    pool = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="publisher.bench")
        for _ in range(connections)
    ]
    for smtp in pool:
        await smtp.connect()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(smtp) for smtp in pool))
    took = time.perf_counter() - t0
    for smtp in pool:
        await smtp.quit()
    return {"seconds": took, "message_bytes": len(data)}


def run_phase(name: str, env: dict[str, str], *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set of a running process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a running process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a running process's main thread and of its other threads."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = "event loop" if task.name == str(pid) else "other threads (database)"
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        secs = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out[name] = round(out.get(name, 0.0) + secs, 2)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--channel", choices=("sms", "email"), default="sms")
    parser.add_argument(
        "--connections",
        type=int,
        default=CONNECTIONS,
        help="email: SMTP connections of the channel's pool and of the bare loop",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--database", help="postgresql://… (default: a fresh SQLite file)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--item", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--smtp-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    email = args.channel == "email"

    if args.phase:  # inside a subprocess
        if args.phase == "prepare":
            result = asyncio.run(phase_prepare(args.n, args.channel))
        elif args.phase == "wait":
            result = asyncio.run(phase_wait(args.item, args.n, args.url))
        elif args.phase == "bare":
            if email:
                result = asyncio.run(phase_bare_email(args.n, args.smtp_port, args.connections))
            else:
                result = asyncio.run(phase_bare(args.n, args.url, args.concurrency))
            result["peak_rss_mb"] = peak_rss_mb()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmpdir:
        tmp = Path(tmpdir)
        database = args.database
        dropdb = None
        if database:
            name = "gk_bench_" + uuid.uuid4().hex[:8]
            subprocess.run(["psql", database, "-qc", f"CREATE DATABASE {name}"], check=True)
            dropdb = (database, name)
            database = database.rsplit("/", 1)[0] + "/" + name
        else:
            database = f"sqlite:///{tmp}/bench.db"
        port = free_port()
        url = f"http://127.0.0.1:{port}/send"
        count_url = url.replace("/send", "/count")
        bare_args = ["--n", str(args.n), "--url", url, "--concurrency", str(args.concurrency)]
        if email:
            smtp_port = free_port()
            sink_command = ["bench/smtp_sink.py", "--port", str(smtp_port)]
            sink_command += ["--http-port", str(port)]
            bare_args = ["--n", str(args.n), "--channel", "email", "--smtp-port", str(smtp_port)]
            bare_args += ["--connections", str(args.connections)]
        else:
            sink_command = ["bench/sink.py", "--port", str(port)]
        sink = subprocess.Popen([sys.executable, *sink_command], cwd=REPO)
        try:
            time.sleep(1.0)
            smtp = (smtp_port, args.connections) if email else None
            env = env_for(database, url, tmp, args.concurrency, smtp)
            bare = run_phase("bare", env, *bare_args)
            prep = run_phase("prepare", env, "--n", str(args.n), "--channel", args.channel)
            bare_runs = [bare]
            # BENCH_PY_SPY=FILE profiles the first worker with py-spy (raw format)
            spy = os.environ.get("BENCH_PY_SPY")
            command = [sys.executable, "-m", "publisher", "--config", str(REPO / "config.yaml")]
            workers = []
            for i in range(args.workers):
                prefix = []
                if spy and i == 0:
                    prefix = [str(Path(sys.executable).parent / "py-spy"), "record", "-r", "200"]
                    prefix += ["-f", "raw", "-o", spy, "--"]
                workers.append(
                    subprocess.Popen(
                        [*prefix, *command, "worker"],
                        env=env,
                        cwd=REPO,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            waited = run_phase(
                "wait", env, "--n", str(args.n), "--item", str(prep["item_id"]), "--url", count_url
            )
            engine_rss = 0.0 if spy else max(vm_hwm_mb(w.pid) for w in workers)
            engine_cpu = sum(cpu_seconds(w.pid) for w in workers)
            threads = thread_cpu(workers[0].pid)
            for w in workers:
                w.send_signal(signal.SIGINT if spy else signal.SIGTERM)
            for w in workers:
                w.wait(timeout=60)
            # the bare loop again after the engine: the machine is shared and noisy,
            # so the baseline is the mean of one run before and one after
            bare_runs.append(run_phase("bare", env, *bare_args))
        finally:
            sink.terminate()
            sink.wait()
            if dropdb:
                subprocess.run(
                    ["psql", dropdb[0], "-qc", f"DROP DATABASE {dropdb[1]} WITH (FORCE)"],
                    check=False,
                )
    engine_rate = args.n / waited["span_seconds"]
    bare_rates = [args.n / b["seconds"] for b in bare_runs]
    bare_rate = sum(bare_rates) / len(bare_rates)
    result = {
        "channel": args.channel,
        "n": args.n,
        "store": "postgresql" if args.database else "sqlite",
        "workers": args.workers,
        **(
            {"smtp_connections": args.connections, "message_bytes": bare["message_bytes"]}
            if email
            else {"concurrency": args.concurrency}
        ),
        "engine_targets_per_s": round(engine_rate),
        "bare_targets_per_s": round(bare_rate),
        "bare_runs_targets_per_s": [round(r) for r in bare_rates],
        "ratio_engine_over_bare": round(engine_rate / bare_rate, 2),
        "engine_peak_rss_mb": round(engine_rss, 1),
        "bare_peak_rss_mb": round(bare["peak_rss_mb"], 1),
        "engine_cpu_ms_per_target": round(engine_cpu / args.n * 1000, 3),
        "bare_cpu_ms_per_target": round(bare["cpu_seconds"] / args.n * 1000, 3),
        "engine_cpu_by_thread_s": threads,
        "sent": waited["sent"],
        "rows_per_claim": waited["rows_per_claim"],
        "rows_per_record": waited["rows_per_record"],
        "publication_lateness_s": waited["lateness_seconds"],
        "subscriber_import_s": round(prep["import_seconds"], 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
