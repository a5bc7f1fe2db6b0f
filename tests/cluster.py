"""A 3-node NATS cluster whose every link runs through a tests/netsplit.py proxy, for tests:
each route between two nodes (one proxy per direction) and each node's client port. So a
test can kill a node (kill -9), restart it, or partition it away from everything (its routes
and its clients cut, the process alive and in a minority), then heal it.

Clients get the proxies' URLs; servers advertise no client URLs and gossip no route
addresses that work, so no connection goes around a proxy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.netsplit import NetSplit
from voxbus_cli.nats_cluster import NatsCluster


class SplittableCluster:
    def __init__(self, data_dir: Path, log_dir: Path, size: int = 3) -> None:
        self.nats = NatsCluster(data_dir, size=size, log_dir=log_dir,
                                route_urls=self._routes_of)
        nodes = self.nats.nodes
        self.route_proxies = {(i, j): NetSplit(nodes[j].cluster_port)
                              for i in range(size) for j in range(size) if i != j}
        self.client_proxies = [NetSplit(node.port) for node in nodes]

    def _routes_of(self, index: int) -> list[str]:
        return [proxy.url for (i, _), proxy in self.route_proxies.items() if i == index]

    @property
    def url(self) -> str:
        """What services connect to: every node, each through its client proxy."""
        return ",".join(proxy.url for proxy in self.client_proxies)

    def _links(self, index: int) -> list[NetSplit]:
        routes = [p for (i, j), p in self.route_proxies.items() if index in (i, j)]
        return [*routes, self.client_proxies[index]]

    def isolate(self, index: int) -> None:
        """Partition node `index` away: its routes and its clients' connections reset, new
        ones refused; the node keeps running on its own."""
        for proxy in self._links(index):
            proxy.cut()

    def heal(self, index: int) -> None:
        for proxy in self._links(index):
            proxy.heal()

    def start(self) -> None:
        for proxy in [*self.route_proxies.values(), *self.client_proxies]:
            proxy.start()
        self.nats.start()

    def stop(self) -> None:
        self.nats.stop()
        for proxy in [*self.route_proxies.values(), *self.client_proxies]:
            proxy.stop()


@contextmanager
def splittable_cluster(data_dir: Path, log_dir: Path) -> Iterator[SplittableCluster]:
    cluster = SplittableCluster(data_dir, log_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
