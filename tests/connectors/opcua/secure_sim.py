"""Test helper: the simulator's OPC UA servers (open and secured) with a client pki around them.

Certificates are made once per module: the server's (by the simulator), the connector's
(`shopfloor certs` code), a user certificate, and a client certificate the server does not
trust. (A uniquely named module, not conftest, so other folders' conftests cannot shadow it.)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from connectors.opcua.pki import Pki, create_certificate
from plc_sim.opcua_server import OpcUaServer, SecureEndpoint, ensure_server_certificate
from plc_sim.process import Simulator
from plc_sim.spec import load_line
from testbed.influxd import free_port

USER = "operator"
PASSWORD = "s3cret-Pa55word"
PASSWORD_ENV = "SHOPFLOOR_TEST_PLC_PASSWORD"
APP_URI = "urn:test:shopfloor:connector"


def make_client_pki(root: Path, *, uri: str = APP_URI) -> Pki:
    pki = Pki(root)
    create_certificate(pki, application_uri=uri, hostnames=["localhost", "127.0.0.1"], days=30)
    return pki


@dataclass
class SecureSim:
    """A running simulator server pair and the files a client needs to reach it."""

    server: OpcUaServer
    sim: Simulator
    server_certificate: Path
    pki: Pki  # the connector's pki; trusted/ holds the server certificate
    user_pki: Pki  # a certificate the server accepts as a user login
    stranger: Pki  # a client certificate the server does not trust

    @property
    def endpoint(self) -> str:
        assert self.server.secure_endpoint is not None
        return self.server.secure_endpoint

    def fresh_pki(self, root: Path, *, trust_server: bool) -> Pki:
        """A copy of the connector's pki, with or without the server in trusted/."""
        shutil.copytree(self.pki.root / "own", root / "own")
        pki = Pki(root)
        pki.create_folders()
        if trust_server:
            shutil.copy(self.server_certificate, pki.trusted)
        return pki


async def start_secure_sim(root: Path) -> SecureSim:
    line = load_line()
    server_cert, server_key = ensure_server_certificate(root / "server", "127.0.0.1")
    pki = make_client_pki(root / "client")
    user_pki = make_client_pki(root / "user", uri="urn:test:user")
    stranger = make_client_pki(root / "stranger")
    shutil.copy(server_cert, pki.trusted)
    shutil.copy(server_cert, stranger.trusted)
    trusted_clients = root / "server" / "trusted"
    user_certs = root / "server" / "users"
    for folder, cert in ((trusted_clients, pki), (user_certs, user_pki)):
        folder.mkdir(parents=True)
        shutil.copy(cert.own_certificate, folder)
    sim = Simulator(line, seed=7)
    server = OpcUaServer(
        line,
        host="127.0.0.1",
        port=free_port(),
        inject=sim.inject,
        clear=sim.clear,
        secure=SecureEndpoint(
            port=free_port(),
            certificate=server_cert,
            private_key=server_key,
            users={USER: PASSWORD},
            user_certificates=user_certs,
            trusted_clients=trusted_clients,
            rejected_clients=root / "server" / "rejected",
        ),
    )
    await server.start()
    return SecureSim(server, sim, server_cert, pki, user_pki, stranger)
