"""The fault suite's cluster: its own PostgreSQL and Redis on spare ports, the provider and billers
in a process of their own, and the platform's processes started the way an operator starts them
(``wojia db upgrade``, ``seed``, ``serve --workers 2``, ``worker``, ``scheduler``).

Nothing here touches the machine's shared PostgreSQL (5432) or Redis (6379): every service is
started from the machine's binaries into a temporary directory, on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[2]
BILLER_SECRET = "faults-biller-" + secrets.token_hex(6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (read from /proc: no psutil in the environment)."""
    out = []
    for stat in glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found.extend(kids)
        todo.extend(kids)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {[p for p in pids if alive(p)]} still alive after {timeout} s")
        time.sleep(0.05)


def _pg_bin() -> Path:
    found = sorted(glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


class Postgres:
    """A PostgreSQL cluster of our own: initdb into a temporary directory, fsync on (durability is
    what is tested), unix socket in that directory, a spare TCP port. As root, initdb and postgres
    run as the ``postgres`` user (initdb refuses root)."""

    def __init__(self, base: Path) -> None:
        self.bin = _pg_bin()
        self.dir = base / "pg"
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = base / "logs" / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.as_user: list[str] = []
        self.dir.mkdir()
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.dir, 0o700)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        subprocess.run(
            [
                *self.as_user,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - the process holds it
        self.proc = subprocess.Popen(
            [
                *self.as_user,
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
                "-c",
                "synchronous_commit=on",
                "-c",
                "full_page_writes=on",
                "-c",
                "max_connections=300",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            if r.returncode == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{tail(self.log)}")
            time.sleep(0.1)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill9(self) -> None:
        """SIGKILL to the postmaster; its backends notice and exit; then it can start again."""
        pid = self.postmaster_pid()
        backends = children(pid)
        os.kill(pid, signal.SIGKILL)
        # The backends exit on their own when they see the postmaster gone; a new postmaster
        # refuses to start while they hold the shared memory.
        try:
            wait_gone([pid, *backends], timeout=20)
        except RuntimeError:
            for b in backends:
                if alive(b):
                    os.kill(b, signal.SIGKILL)
            wait_gone([pid, *backends], timeout=10)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.kill(self.postmaster_pid(), signal.SIGQUIT)
            self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class Redis:
    """``redis-server`` on a spare port with no persistence: a kill -9 really empties it."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.dir = base / "redis"
        self.dir.mkdir()
        self.log = base / "logs" / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - the process holds it
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{tail(self.log)}")
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def _command(self, line: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(line + b"\r\n")
            return s.recv(256)

    def set_marker(self) -> None:
        """A key of our own, to see that a restart really came back empty."""
        assert self._command(b"SET faults:marker 1").startswith(b"+OK")

    def has_marker(self) -> bool:
        return self._command(b"EXISTS faults:marker").strip() == b":1"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def tail(path: Path, n: int = 6000) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Proc:
    """One platform process (api, worker, scheduler, sandboxes) with its log file."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - the process holds it
        log.write(f"\n===== start {self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
        )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9_tree(self) -> list[int]:
        """SIGKILL to the process and every descendant at once (a container dying)."""
        pids = [self.pid, *descendants(self.pid)]
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=10)
        wait_gone(pids, timeout=10)
        return pids

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pids = descendants(self.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for p in pids:
            if alive(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)


@dataclass
class Cluster:
    base: Path
    pg: Postgres
    redis: Redis
    env: dict[str, str]
    api_port: int
    sandbox_port: int
    api: Proc
    worker: Proc
    scheduler: Proc
    sandboxes: Proc
    procs: list[Proc] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``python -m app_api.wiring.cli ...`` against the cluster, logged."""
        r = subprocess.run(
            [sys.executable, "-m", "app_api.wiring.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        with open(self.base / "logs" / "cli.log", "a") as f:
            f.write(f"$ wojia {' '.join(args)}  -> {r.returncode}\n{r.stdout}{r.stderr}\n")
        if check and r.returncode != 0:
            raise RuntimeError(f"wojia {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def logs(self) -> str:
        parts = []
        for path in sorted((self.base / "logs").glob("*.log")):
            parts.append(f"----- {path.name} (last 6000 bytes)\n{tail(path)}")
        return "\n".join(parts)

    async def wait_api(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.api_url, timeout=2) as c:
            while True:
                if not self.api.running():
                    raise RuntimeError(f"api exited {self.api.proc and self.api.proc.returncode}")
                try:
                    if (await c.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("api did not answer /healthz in time")
                await asyncio.sleep(0.2)

    def api_workers(self) -> list[int]:
        """The uvicorn worker processes under ``serve --workers 2`` (children of the supervisor)."""
        return [p for p in children(self.api.pid) if b"spawn_main" in _cmdline(p)]

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.pg.dsn, timeout=10)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def sandbox(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.sandbox_url, timeout=30) as c:
            r = await c.request(method, path, **kwargs)
            r.raise_for_status()
            return r.json()

    def ensure_up(self) -> None:
        """Start whatever is not running (services first)."""
        if self.pg.proc is None or self.pg.proc.poll() is not None:
            self.pg.start()
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            self.redis.start()
        for p in (self.sandboxes, self.api, self.worker, self.scheduler):
            if not p.running():
                p.start()

    def stop(self) -> None:
        for p in (self.api, self.worker, self.scheduler, self.sandboxes):
            p.stop()
        self.redis.stop()
        self.pg.stop()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def make_cluster(base: Path) -> Cluster:
    """Create and start everything: PostgreSQL, Redis, sandboxes; migrate and seed; api, worker,
    scheduler. The caller stops it (``Cluster.stop``)."""
    (base / "logs").mkdir(parents=True)
    (base / "var").mkdir()
    pg, redis = Postgres(base), Redis(base)
    pg.init()
    pg.start()
    redis.start()
    api_port, sandbox_port = free_port(), free_port()
    appid, mch_id, api_key = (
        "wx" + secrets.token_hex(8),
        "19" + f"{secrets.randbelow(10**8):08d}",
        secrets.token_hex(16),
    )
    billers = [
        {
            "code": code,
            "kind": code,
            "name": name,
            "base_url": f"http://127.0.0.1:{sandbox_port}/billers/{code}",
        }
        | {"secret": BILLER_SECRET, "timeout_s": 5}
        for code, name in (
            ("water", "亳州市自来水公司"),
            ("power", "国网亳州供电公司"),
            ("gas", "亳州港华燃气"),
        )
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "WOJIA_ENVIRONMENT": "development",
        "WOJIA_DATABASE_URL": pg.url,
        "WOJIA_REDIS_URL": redis.url,
        "WOJIA_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
        "WOJIA_VAR_DIR": str(base / "var"),
        "WOJIA_JOBS_EMBEDDED": "false",
        "WOJIA_LOG_JSON": "false",
        "WOJIA_SMS_PER_IP_PER_HOUR": "1000000",
        "WOJIA_SMS_PER_PHONE_PER_DAY": "1000",
        "WOJIA_PAYMENTS_MODE": "live",
        "WOJIA_PAYMENTS_WECHAT_V2__APPID": appid,
        "WOJIA_PAYMENTS_WECHAT_V2__MCH_ID": mch_id,
        "WOJIA_PAYMENTS_WECHAT_V2__API_KEY": api_key,
        "WOJIA_PAYMENTS_WECHAT_V2__BASE_URL": f"http://127.0.0.1:{sandbox_port}/wechat_v2/",
        "WOJIA_COLUMN_UTILITIES_BILLERS": json.dumps(billers, ensure_ascii=False),
    }
    logs = base / "logs"
    py = sys.executable
    sandboxes = Proc(
        "sandboxes",
        [
            py,
            "-m",
            "tests.faults.sandboxes",
            "--port",
            str(sandbox_port),
            "--secret",
            BILLER_SECRET,
            "--appid",
            appid,
            "--mch-id",
            mch_id,
            "--api-key",
            api_key,
        ],
        env,
        logs / "sandboxes.log",
    )
    cli = [py, "-m", "app_api.wiring.cli"]
    api = Proc(
        "api",
        [*cli, "serve", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "2", "--no-migrate"],
        env,
        logs / "api.log",
    )
    worker = Proc("worker", [*cli, "worker"], env, logs / "worker.log")
    scheduler = Proc("scheduler", [*cli, "scheduler"], env, logs / "scheduler.log")
    cluster = Cluster(base, pg, redis, env, api_port, sandbox_port, api, worker, scheduler, sandboxes)
    sandboxes.start()
    cluster.cli("db", "upgrade")
    cluster.cli("seed")
    api.start()
    worker.start()
    scheduler.start()
    return cluster


def new_base() -> Path:
    base = Path(tempfile.mkdtemp(prefix="wojia-faults-"))
    base.chmod(0o711)  # the postgres user reaches its own directory inside
    return base


def remove_base(base: Path, *, keep_logs: bool = False) -> None:
    """Remove the run's directory (databases, Redis, var), or all but its logs."""
    for part in base.iterdir() if keep_logs else [base]:
        if part.name != "logs" or not keep_logs:
            shutil.rmtree(part, ignore_errors=True)
