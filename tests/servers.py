"""Start real servers on 127.0.0.1 for the tests, and stop exactly the processes we started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(url: str, process: subprocess.Popen[bytes], log: Path, accept: tuple[int, ...] = (200,)) -> None:
    """Poll `url` until it answers with an accepted status; fail with the server's log if it dies."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code in accept:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")


@contextmanager
def running(
    args: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        wait_until(ready_url, process, log)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def faulty_cloud_args(port: int) -> list[str]:
    """The fault-injecting stand-in cloud (`tests/faulty_cloud.py`) on a port."""
    return [sys.executable, "-m", "tests.faulty_cloud", "--port", str(port)]


def gateway_args(port: int, config: Path, policy: Path) -> list[str]:
    return [
        sys.executable, "-m", "router", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--config", str(config), "--policy", str(policy),
    ]  # fmt: skip


class RedisServer:
    """A redis-server of our own on a free port, which a test may stop and start again."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; `make test` installs it (Debian package redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self._extra: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, extra: list[str] | None = None) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += extra or self._extra
        self._extra = extra or self._extra  # a restart keeps the options (a cluster node stays one)
        self.process = subprocess.Popen(args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def cluster_node_port() -> int:
    """A free port for a cluster node: its bus listens on port + 10000, which must exist and be free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisCluster:
    """A real three-node Redis Cluster (`redis-server --cluster-enabled`, slots split by `redis-cli
    --cluster create`), each node a process of ours on a free port."""

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.nodes = [RedisServer(workdir / f"node{i}", port=cluster_node_port()) for i in range(nodes)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)
            node.start(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000"])  # fmt: skip
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (Debian package redis-tools)")
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every node must agree that all 16384 slots are served
            infos = [subprocess.run([cli, "-p", str(n.port), "cluster", "info"], capture_output=True, text=True).stdout
                     for n in self.nodes]  # fmt: skip
            if all("cluster_state:ok" in info for info in infos):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
