"""A 3-node nats-server cluster on loopback, for tests: routes, JetStream, a store each.

    async with NatsCluster(tmp_path) as cluster:   # returns once a meta leader is elected
        cluster.url                                # all three client URLs, comma-separated
        leader = await cluster.stream_leader("WORKFLOW_HISTORY")   # "n2"
        cluster.kill(leader)                       # kill -9
        await cluster.restart(leader)              # same ports, same store

`NatsCluster(root, leafnodes=True)` also accepts leaf node connections (`cluster.leaf_url`).

Each node runs `nats-server -c <its config>`: `server_name`, a client port, a monitor port,
`jetstream { store_dir }` and `cluster { name, listen, routes: [all three] }`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from dagnats import names
from dagnats.connection import connect
from dagnats.server.binary import find_nats_server
from dagnats.server.procs import free_port, log_tail

CLUSTER_NAME = "dagnats-test"
READY_TIMEOUT_S = 30.0
POLL_S = 0.05


@dataclass
class Node:
    """One nats-server of the cluster."""

    name: str
    root: Path
    port: int
    route_port: int
    monitor_port: int
    leaf_port: int = 0  # accepts leaf node connections when set
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """This node's client URL."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the node logs."""
        return self.root / "nats.log"

    def config(self, routes: list[int]) -> str:
        """The node's nats-server config."""
        route_urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
        store = self.root / "store"
        return (f"server_name: {self.name}\nlisten: 127.0.0.1:{self.port}\n"
                f"http: 127.0.0.1:{self.monitor_port}\n"
                f'jetstream {{ store_dir: "{store}", max_memory_store: 256MB, '
                "max_file_store: 2GB }\n"
                f"cluster {{ name: {CLUSTER_NAME}, listen: 127.0.0.1:{self.route_port}, "
                f"routes: [{route_urls}] }}\n"
                + (f"leafnodes {{ listen: 127.0.0.1:{self.leaf_port} }}\n"
                   if self.leaf_port else ""))

    def start(self, binary: Path, routes: list[int]) -> None:
        """Spawn the server (returns at once; the cluster waits for readiness)."""
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nats.conf"
        conf.write_text(self.config(routes))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([str(binary), "-c", str(conf)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 5 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()


class NatsCluster:
    """Three clustered nats-servers with JetStream on loopback, in a temporary dir."""

    def __init__(self, root: Path, size: int = 3, *, leafnodes: bool = False) -> None:
        self.binary = find_nats_server()
        self.nodes = [Node(f"n{i + 1}", root / f"n{i + 1}", free_port(), free_port(),
                           free_port(), free_port() if leafnodes else 0)
                      for i in range(size)]

    @property
    def leaf_url(self) -> str:
        """The first node's leaf node URL (with `leafnodes=True`)."""
        return f"nats-leaf://127.0.0.1:{self.nodes[0].leaf_port}"

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (as `--nats-url` takes them)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> Node:
        """The node called `name` (n1, n2, n3)."""
        return next(node for node in self.nodes if node.name == name)

    @property
    def _routes(self) -> list[int]:
        return [node.route_port for node in self.nodes]

    async def start(self) -> None:
        """Start every node, then wait until JetStream answers (a meta leader exists)."""
        for node in self.nodes:
            node.start(self.binary, self._routes)
        await self.wait_ready()

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until every running node's JetStream answers an account info request, which
        it does only once the cluster has elected a meta leader."""
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            if not node.running:
                continue
            while not await _jetstream_answers(node.url):
                if not node.running:
                    raise RuntimeError(f"{node.name} exited:\n{log_tail(node.log_path)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no JetStream meta leader after {timeout_s} s; "
                                       f"{node.name}:\n{log_tail(node.log_path)}")
                await asyncio.sleep(POLL_S)

    def kill(self, name: str) -> None:
        """kill -9 the node `name`."""
        self.node(name).kill()

    async def restart(self, name: str) -> None:
        """Start the node `name` again on its ports and store."""
        node = self.node(name)
        node.start(self.binary, self._routes)
        await self.wait_ready()

    async def stream_info(self, stream: str, timeout_s: float = 5.0) -> dict[str, object]:
        """The stream's info (`$JS.API.STREAM.INFO`) as JSON, from any running node."""
        url = ",".join(node.url for node in self.nodes if node.running)
        nc = await connect(url, name="cluster-harness")
        try:
            reply = await nc.request(names.stream_info_subject(stream), b"",
                                     timeout=timeout_s)
        finally:
            await nc.close()
        body: dict[str, object] = json.loads(reply.data)
        if "error" in body:
            raise RuntimeError(f"stream info {stream}: {body['error']}")
        return body

    async def stream_leader(self, stream: str, timeout_s: float = READY_TIMEOUT_S) -> str:
        """The name of the node leading `stream` (waits while it has none)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(Exception):
                # a short timeout: while a leader is elected the request has no answer
                cluster = (await self.stream_info(stream, 0.5)).get("cluster") or {}
                leader = cluster.get("leader") if isinstance(cluster, dict) else None
                if leader:
                    return str(leader)
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream {stream} has no leader after {timeout_s} s")
            await asyncio.sleep(POLL_S)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    async def __aenter__(self) -> NatsCluster:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


async def _jetstream_answers(url: str) -> bool:
    try:
        nc = await connect(url, name="cluster-harness", connect_timeout_s=0.5)
    except Exception:
        return False
    try:
        await nc.jetstream().account_info()
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def environ_without_nats() -> dict[str, str]:
    """This process's environment without a NATS URL or login of its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DAGNATS_NATS")}
