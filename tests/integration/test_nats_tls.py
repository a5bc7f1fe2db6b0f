"""TLS to NATS, against a real nats-server with the generated configuration and a throwaway CA
(openssl): with the CA (VOXBUS_NATS_TLS_CA) a service connects and works; without it the
server's certificate is not trusted and the connection fails; a server that verifies
clients refuses one without a certificate (VOXBUS_NATS_TLS_CERT/_KEY)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path

import pytest

from tests.nats_auth import AuthServer, Certs, auth_server, make_certs, probe
from voxbus.v1.call_pb2 import CallEvent
from voxbus_common import subjects
from voxbus_common.bus import Bus
from voxbus_common.nats_permissions import TlsFiles

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("certs")))


async def works(server: AuthServer, **tls: str) -> None:
    """The gateway's real path over TLS: connect, set up the streams, an acked publish."""
    bus = await asyncio.wait_for(Bus.connect(server.settings("gateway", **tls), "gw-tls"), 20)
    try:
        assert bus.nc.connected_url is not None and bus.nc.connected_url.scheme == "tls"
        await bus.ensure_streams()
        await bus.publish_acked(subjects.control("ctls1"), CallEvent(
            started=CallEvent.Started(sample_rate=16000)))
    finally:
        await bus.close()


async def test_tls_with_the_ca_works_and_without_it_is_refused(
        tmp_path: Path, certs: Certs) -> None:
    tls = TlsFiles(str(certs.server_cert), str(certs.server_key))
    with auth_server(tmp_path / "nats", tls=tls, scheme="tls") as server:
        await works(server, nats_tls_ca=str(certs.ca))
        for settings in (server.settings("gateway"),  # tls:// but only the system's CAs
                         server.settings("gateway", nats_url=server.url.replace("tls:", "nats:"))):
            with pytest.raises(ssl.SSLCertVerificationError):
                await probe(settings)


async def test_a_server_that_verifies_clients_needs_their_certificate(
        tmp_path: Path, certs: Certs) -> None:
    tls = TlsFiles(str(certs.server_cert), str(certs.server_key), str(certs.ca), verify=True)
    with auth_server(tmp_path / "nats", tls=tls, scheme="tls") as server:
        await works(server, nats_tls_ca=str(certs.ca), nats_tls_cert=str(certs.client_cert),
                    nats_tls_key=str(certs.client_key))
        with pytest.raises((ConnectionError, ssl.SSLError)):  # the handshake is refused
            await probe(server.settings("gateway", nats_tls_ca=str(certs.ca)))
