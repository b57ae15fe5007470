"""A real Kannel for the tests: bearerbox + smsbox + fakesmsc on loopback ports, started as
user kannel with setpriv (../shared/components.md), and readers for what the fake SMSC
printed (UCS-2 arrives URL-encoded as UTF-16BE, with `+` for the byte 0x20)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

BEARERBOX = "/usr/sbin/bearerbox"
SMSBOX = "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
SENDER = "10690000"
USERNAME = "publisher"
PASSWORD = "kannel-test-password"
INBOUND_SECRET = "inbound-shared-secret-for-tests"

GOT = re.compile(r"Got message \d+: <(\S+) (\S+) (.*)>\s*$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def missing() -> str | None:
    """Why Kannel cannot run here, or None."""
    for path in (BEARERBOX, SMSBOX, FAKESMSC):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install kannel kannel-extras; `make system-deps`)"
    try:
        pwd.getpwnam("kannel")
    except KeyError:
        return "there is no user kannel (the Debian package creates it)"
    if os.geteuid() != 0:
        return "Kannel is started as user kannel with setpriv, which needs root"
    if shutil.which("setpriv") is None:
        return "setpriv is missing (util-linux)"
    return None


def _decode(kind: str, data: str) -> bytes:
    return unquote_to_bytes(data.replace("+", " ")) if kind != "text" else data.encode()


@dataclass(frozen=True)
class Sms:
    """One message as the fake SMSC got it, its parts joined."""

    sender: str
    to: str
    text: str
    parts: int


def parse_output(lines: list[str]) -> list[Sms]:
    """Messages in fakesmsc's output: single ones (`text`, `ucs-2`) and concatenated parts
    (`udh <UDH> data <UTF-16BE>`), joined by reference number and sequence."""
    out: list[Sms] = []
    pending: defaultdict[tuple[str, str, int], dict[int, bytes]] = defaultdict(dict)
    totals: dict[tuple[str, str, int], int] = {}
    for line in lines:
        m = GOT.search(line)
        if not m:
            continue
        sender, to, rest = m.groups()
        kind, _, data = rest.partition(" ")
        if kind == "udh":
            udh_raw, _, tail = data.partition(" data ")
            udh = unquote_to_bytes(udh_raw.replace("+", " "))
            assert udh[:3] == b"\x05\x00\x03", udh  # 8-bit reference concatenation IE
            ref, total, seq = udh[3], udh[4], udh[5]
            key = (sender, to, ref)
            pending[key][seq] = _decode("ucs-2", tail)
            totals[key] = total
            if len(pending[key]) == total:
                joined = b"".join(pending[key][i] for i in range(1, total + 1))
                out.append(Sms(sender, to, joined.decode("utf-16-be"), total))
                del pending[key]
        elif kind == "ucs-2":
            out.append(Sms(sender, to, _decode(kind, data).decode("utf-16-be"), 1))
        elif kind == "text":
            out.append(Sms(sender, to, unquote_to_bytes(data.replace("+", " ")).decode(), 1))
    return out


@dataclass
class Kannel:
    workdir: Path
    sendsms_port: int
    admin_port: int
    mt_port: int
    mo_port: int
    #: where Kannel's sms-service calls us (a test serves the app on this port)
    app_port: int
    pids: dict[str, int] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    def gateway(self, **overrides: object) -> dict[str, object]:
        """The `channels.sms.settings.gateways` entry for this Kannel."""
        return {
            "name": "kannel",
            "type": "kannel",
            "url": self.sendsms_url,
            "username": USERNAME,
            "password": PASSWORD,
            "sender": SENDER,
            "timeout": 10,
            **overrides,
        }

    # -- what the fake SMSCs printed ------------------------------------------------------

    def lines(self, name: str) -> list[str]:
        path = self.workdir / f"{name}.out"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def mark(self) -> int:
        """Where the MT output ends now (read only what comes after)."""
        return len(self.lines("fakesmsc-mt"))

    def received(self, since: int = 0) -> list[Sms]:
        return parse_output(self.lines("fakesmsc-mt")[since:])

    def replies(self) -> list[Sms]:
        """Replies to MO messages: Kannel routes them to either fake SMSC."""
        # the parts of one long reply may even go to different ones: join them all
        lines: list[str] = []
        for path in sorted(self.workdir.glob("fakesmsc-*.out")):
            lines.extend(path.read_text(errors="replace").splitlines())
        return parse_output(lines)

    # -- mobile-originated ------------------------------------------------------------------

    def send_mo(self, sender: str, text: str, seq: int) -> subprocess.Popen[bytes]:
        """The fake SMSC sends `text` from `sender` to our number (as UCS-2 unless ASCII);
        the process stays connected (to receive a reply routed to it) until stopped."""
        if text.isascii() and " " not in text:
            spec = f"{sender} {SENDER} text {text}"
        else:
            data = "".join(f"%{b:02X}" for b in text.encode("utf-16-be"))
            spec = f"{sender} {SENDER} ucs2 {data}"
        out = open(self.workdir / f"fakesmsc-mo{seq}.out", "wb")  # noqa: SIM115 - kept for the process
        proc = subprocess.Popen(
            [*_as_kannel(), FAKESMSC, "-H", "127.0.0.1", "-r", str(self.mo_port), "-i", "0.01",
             "-m", "1", spec],
            stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
        )  # fmt: skip
        out.close()
        self.procs.append(proc)
        return proc

    def stop_process(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _as_kannel() -> list[str]:
    return ["setpriv", "--reuid=kannel", "--regid=nogroup", "--clear-groups"]


CONF = """\
group = core
admin-port = {admin_port}
admin-interface = 127.0.0.1
admin-password = adminpw
status-password = statuspw
admin-allow-ip = "127.0.0.1"
smsbox-port = {smsbox_port}
smsbox-interface = 127.0.0.1
box-deny-ip = "*.*.*.*"
box-allow-ip = "127.0.0.1"
log-file = "{dir}/bearerbox.log"
log-level = 1
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = mt
port = {mt_port}
our-host = 127.0.0.1
connect-allow-ip = 127.0.0.1

group = smsc
smsc = fake
smsc-id = mo
port = {mo_port}
our-host = 127.0.0.1
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox_port}
sendsms-port = {sendsms_port}
sendsms-interface = 127.0.0.1
log-file = "{dir}/smsbox.log"
log-level = 1
mo-recode = true

group = sendsms-user
username = {username}
password = {password}
max-messages = 10
concatenation = true
forced-smsc = mt

group = sms-service
keyword = default
catch-all = true
get-url = "http://127.0.0.1:{app_port}/sms/inbound?secret={secret}&from=%p&to=%P&text=%a"
max-messages = 3
concatenation = true
accept-x-kannel-headers = true
"""


def _wait_port(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def _sendsms_answers(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True  # it answers (403 without credentials)
        except OSError:
            time.sleep(0.05)
    return False


def start() -> Kannel:
    """Start bearerbox, the MT fake SMSC and smsbox; returns when sendsms answers."""
    workdir = Path(tempfile.mkdtemp(prefix="gk-kannel-"))
    os.chmod(workdir, 0o755)
    os.chown(workdir, pwd.getpwnam("kannel").pw_uid, -1)
    k = Kannel(
        workdir=workdir,
        sendsms_port=free_port(),
        admin_port=free_port(),
        mt_port=free_port(),
        mo_port=free_port(),
        app_port=free_port(),
    )
    smsbox_port = free_port()
    (workdir / "kannel.conf").write_text(
        CONF.format(
            dir=workdir,
            admin_port=k.admin_port,
            smsbox_port=smsbox_port,
            mt_port=k.mt_port,
            mo_port=k.mo_port,
            sendsms_port=k.sendsms_port,
            app_port=k.app_port,
            username=USERNAME,
            password=PASSWORD,
            secret=INBOUND_SECRET,
        )
    )

    def spawn(name: str, *argv: str) -> None:
        with open(workdir / f"{name}.out", "wb") as out:
            proc = subprocess.Popen(
                [*_as_kannel(), *argv], stdout=out, stderr=subprocess.STDOUT, cwd=workdir
            )
        k.pids[name] = proc.pid
        k.procs.append(proc)

    try:
        spawn("bearerbox", BEARERBOX, "-v", "1", "kannel.conf")
        if not _wait_port(k.mt_port, 10):
            raise RuntimeError("bearerbox did not open the fake SMSC port")
        spawn(
            "fakesmsc-mt",
            FAKESMSC,
            "-H",
            "127.0.0.1",
            "-r",
            str(k.mt_port),
            "-m",
            "0",
            "100 200 text hello",
        )
        spawn("smsbox", SMSBOX, "-v", "1", "kannel.conf")
        if not _sendsms_answers(f"http://127.0.0.1:{k.sendsms_port}/cgi-bin/sendsms", 10):
            raise RuntimeError("smsbox's sendsms did not answer")
    except Exception:
        stop(k)
        raise
    return k


def stop(k: Kannel) -> None:
    """SIGTERM to bearerbox stops the chain; whatever is left is killed by its PID."""
    bearerbox = next((p for p in k.procs if p.pid == k.pids.get("bearerbox")), None)
    if bearerbox is not None and bearerbox.poll() is None:
        bearerbox.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    for proc in k.procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    shutil.rmtree(k.workdir, ignore_errors=True)
