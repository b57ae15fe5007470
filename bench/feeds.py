"""Feed benchmark: regenerating a large feed, and serving it to pollers, each against a
bare baseline measured in the same run.

1. Regeneration: the rss channel rebuilds a 1,000-item feed from the store (read the
   items, render each body, build RSS + Atom with the catalogue extension, write both
   files atomically). Baseline: feedgen alone building the same 1,000 entries from
   ready-made dictionaries, with no store, no rendering and no files.
2. Conditional GETs: `publisher serve` answering `If-None-Match` polls of /feeds/all.rss
   (304s, as a portal polling every minute sees them), against nginx serving the same
   file from the same directory, with wrk (-t2 -c50) on loopback. Unconditional GETs
   are measured too, for scale.

    .venv/bin/python bench/feeds.py                 # 1,000 items, 10 s per wrk run
    .venv/bin/python bench/feeds.py --items 1000 --seconds 5

Needs nginx and wrk (`apt-get install -y --no-install-recommends nginx wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA_KEY = "YmVuY2gta2V5LTMyLWJ5dGVzLWxvbmctLi4uLi4uLi4="
BODY = (
    "各村（社区）、镇属各单位：\n\n为做好冬季农田水利建设工作，现将有关事项通知如下。\n\n"
    "一、**工作目标**。完成灌溉渠道清淤 *12* 公里，新建机耕路 3 条。\n\n"
    "二、工作要求。各村要落实责任，确保质量与安全。\n" * 3
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environ(tmp: Path, port: int, items: int) -> dict[str, str]:
    overrides = {
        "STORAGE__URL": f"sqlite:///{tmp}/publisher.db",
        "STORAGE__ATTACHMENTS_DIR": str(tmp / "attachments"),
        "STORAGE__FEEDS_DIR": str(tmp / "feeds"),
        "SECURITY__DATA_KEY": DATA_KEY,
        "SECURITY__DATA_KEY_FILE": "",
        "SERVER__PORT": str(port),
        "CHANNELS__RSS__SETTINGS__ENTRIES": str(items),
    }
    env = dict(os.environ)
    env.update({f"PUBLISHER__{k}": v for k, v in overrides.items()})
    env["PYTHONPATH"] = str(REPO)
    return env


async def regenerate(items: int, runs: int) -> dict[str, float]:
    """Import `items` archival items, then time the channel's regeneration and bare feedgen."""
    from feedgen.feed import FeedGenerator

    from channels.base import AdapterContext
    from channels.rss import FeedChannel, FeedSettings
    from publisher.config import load_config
    from publisher.content import ItemCreate, content_from
    from publisher.store import open_store

    config = load_config(REPO / "config.yaml")
    store = await open_store(config)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(items):
        fields = ItemCreate.model_validate(
            {
                "title": f"关于第{i}批冬季农田水利建设项目的公示",
                "body": BODY,
                "category": ["nync", "zwgk", "shjz"][i % 3],
                "written_at": (start + timedelta(hours=i)).date().isoformat(),
                "doc_no": f"上政发〔2026〕{i}号",
            }
        )
        await store.import_item(
            content_from(fields, config),
            index_no=None,
            published_at=start + timedelta(hours=i),
            actor="bench",
        )
    config.feeds_path.mkdir(parents=True, exist_ok=True)
    # cold: a fresh channel renders every body; warm: a later pass of the same channel,
    # as after one correction (the other 999 entries come from its cache)
    cold: list[float] = []
    warm: list[float] = []
    for _ in range(runs):
        channel = FeedChannel(
            FeedSettings(entries=items), config.site, AdapterContext(config, store)
        )
        t0 = time.perf_counter()
        await channel.regenerate("all")
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await channel.regenerate("all")
        warm.append(time.perf_counter() - t0)
    size = (config.feeds_path / "all.rss").stat().st_size

    # the bare baseline: feedgen alone, the same number of entries, text ready-made
    entries = [
        {
            "id": f"urn:uuid:{i:032x}",
            "title": f"关于第{i}批冬季农田水利建设项目的公示",
            "html": "<p>" + BODY.replace("\n\n", "</p><p>") + "</p>",
            "when": start + timedelta(hours=i),
        }
        for i in range(items)
    ]
    bare: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fg = FeedGenerator()
        fg.id("urn:bench")
        fg.title("bench")
        fg.link(href="http://127.0.0.1/", rel="alternate")
        fg.description("bench")
        for e in entries:
            fe = fg.add_entry(order="append")
            fe.id(e["id"])
            fe.title(e["title"])
            fe.link(href="http://127.0.0.1/items/x")
            fe.content(e["html"], type="html")
            fe.published(e["when"])
            fe.updated(e["when"])
        fg.rss_str()
        fg.atom_str()
        bare.append(time.perf_counter() - t0)
    await store.close()
    return {
        "cold_s": statistics.median(cold),
        "warm_s": statistics.median(warm),
        "bare_s": statistics.median(bare),
        "rss_bytes": size,
    }


def wait_http(url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def etag_of(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        etag = resp.headers["ETag"]
        assert etag, f"{url} sends no ETag"
        return str(etag)


def wrk(url: str, seconds: int, etag: str | None) -> float:
    cmd = ["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency"]
    if etag:
        cmd += ["-H", f"If-None-Match: {etag}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert m, out
    if etag:
        # every answer must have been a 304: wrk counts non-2xx/3xx only, so check a sample
        req = urllib.request.Request(url, headers={"If-None-Match": etag})
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError(f"{url} answered 200 to a matching If-None-Match")
        except urllib.error.HTTPError as exc:
            assert exc.code == 304, exc.code
    return float(m.group(1))


NGINX_CONF = """worker_processes 2;
pid nginx.pid;
error_log error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
    types {{ application/rss+xml rss; application/atom+xml atom; }}
    client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp;
    uwsgi_temp_path tmp; scgi_temp_path tmp;
    server {{ listen 127.0.0.1:{port}; root {root}; location /feeds/ {{ alias {root}/; etag on; }} }}
}}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5, help="regenerations to take the median of")
    ap.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    args = ap.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(
                f"{tool} is not installed: apt-get install -y --no-install-recommends nginx wrk"
            )

    with tempfile.TemporaryDirectory(prefix="bench-feeds-") as tmpdir:
        tmp = Path(tmpdir)
        os.chmod(tmp, 0o755)  # nginx workers run as nobody
        app_port, nginx_port = free_port(), free_port()
        env = environ(tmp, app_port, args.items)
        os.environ.update({k: v for k, v in env.items() if k.startswith("PUBLISHER__")})
        regen = asyncio.run(regenerate(args.items, args.runs))
        print(
            f"regenerate {args.items}-item feed (all.rss {regen['rss_bytes'] / 1024:.0f} KB): "
            f"bare feedgen {regen['bare_s']:.3f} s; channel cold {regen['cold_s']:.3f} s "
            f"(bare/channel {regen['bare_s'] / regen['cold_s']:.2f}), warm {regen['warm_s']:.3f} s "
            f"(bare/channel {regen['bare_s'] / regen['warm_s']:.2f})",
            flush=True,
        )

        # the server only serves here: the feed is already written, nothing to deliver
        serve_env = env | {"PUBLISHER__CHANNELS__RSS__ENABLED": "false"}
        app = subprocess.Popen(
            [str(REPO / ".venv/bin/publisher"), "--config", str(REPO / "config.yaml"), "serve"],
            env=serve_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ngx = tmp / "nginx"
        (ngx / "tmp").mkdir(parents=True)
        (ngx / "nginx.conf").write_text(NGINX_CONF.format(port=nginx_port, root=tmp / "feeds"))
        subprocess.run(
            ["nginx", "-c", str(ngx / "nginx.conf"), "-p", f"{ngx}/", "-g", "user nobody nogroup;"],
            check=True,
        )
        try:
            app_url = f"http://127.0.0.1:{app_port}/feeds/all.rss"
            ngx_url = f"http://127.0.0.1:{nginx_port}/feeds/all.rss"
            wait_http(app_url, 60)
            wait_http(ngx_url)
            results: dict[str, float] = {}
            for label, url in (("app", app_url), ("nginx", ngx_url)):
                results[f"{label}_304"] = wrk(url, args.seconds, etag_of(url))
                results[f"{label}_200"] = wrk(url, args.seconds, None)
            print(
                f"conditional GET (304): app {results['app_304']:,.0f} req/s, "
                f"nginx {results['nginx_304']:,.0f} req/s, app/nginx "
                f"{results['app_304'] / results['nginx_304']:.2f}"
            )
            print(
                f"full GET (200, {regen['rss_bytes'] / 1024:.0f} KB): app {results['app_200']:,.0f} req/s, "
                f"nginx {results['nginx_200']:,.0f} req/s, app/nginx "
                f"{results['app_200'] / results['nginx_200']:.2f}"
            )
        finally:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(15)
            except subprocess.TimeoutExpired:
                app.kill()
            pid = (ngx / "nginx.pid").read_text().strip()
            os.kill(int(pid), signal.SIGQUIT)


if __name__ == "__main__":
    main()
