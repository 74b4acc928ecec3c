"""OPC UA face of the line: the machines with protocol `opcua`, as a modern PLC shows them.

Address space: Objects/<line>/<machine>/<signal>, string node ids `ns=2;s=<line>.<machine>.<signal>`
in the line's namespace. Data types: measurements and continuous totals (kWh, hours) are Double
(AnalogItemType), integer counters (bottles, caps) UInt32, `state` Int32, flags Boolean; every
variable has EURange and EngineeringUnits (UNECE codes). Each machine object has the methods
`InjectFault(fault: String, severity: Double, duration_s: Double)` (duration_s <= 0: until cleared)
and `ClearFault(fault: String)`; the object Objects/<line>/Simulator has the same two methods with a
leading `machine: String` argument, so OPC UA clients can fault the Modbus machines too.

Security: the open endpoint (SecurityPolicy None, anonymous) always; with a `SecureEndpoint`, a
second server on its own port serves the same address space only over Basic256Sha256,
Aes128_Sha256_RsaOaep and Aes256_Sha256_RsaPss (Sign and SignAndEncrypt) and only to a user
who logs in (username and password, or a user certificate), as a locked-down PLC does. Two
servers rather than two endpoints of one, because asyncua's login rules are per server.
On the secured server an unsecured (None) channel serves discovery only (GetEndpoints,
FindServers), and a password is accepted only encrypted with the server's key, whatever the
channel: asyncua alone would serve reads on a None channel and take a clear-text password.
With a trust list (`trusted_clients`), an unknown client certificate is refused and saved to
`rejected_clients` until someone moves it to the trust list, as on a real PLC.

History: every variable keeps its last `history` changes (default 3600) in memory for
HistoryRead (raw), as a historizing PLC or gateway does.

Timestamps: as on real servers, a variable's source timestamp changes only when its value
changes (`timestamps="change"`); `timestamps="tick"` restamps every variable on every tick.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from asyncua import Node, Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen, security_policies
from asyncua.crypto.permission_rules import PermissionRuleset, User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from plc_sim.alarms import LineAlarms
from plc_sim.faults import FaultError
from plc_sim.machines import SignalKind
from plc_sim.spec import UNITS, LineSpec
from plc_sim.tags import OPCUA_NAMESPACE_INDEX

UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
APPLICATION_URI = "urn:shopfloor:plc_sim:server"
SECURE_POLICIES = [
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]

HISTORY_VALUES = 3600  # changes kept per variable: an hour of a signal that changes every second
InjectFault = Callable[[str, str, float, float | None], None]
ClearFault = Callable[[str, str], None]

_VARIANTS: dict[SignalKind, tuple[ua.VariantType, Callable[[float], Any]]] = {
    SignalKind.ANALOG: (ua.VariantType.Double, float),
    SignalKind.TOTAL: (ua.VariantType.Double, float),
    SignalKind.COUNT: (ua.VariantType.UInt32, int),
    SignalKind.STATE: (ua.VariantType.Int32, int),
    SignalKind.FLAG: (ua.VariantType.Boolean, bool),
    SignalKind.COMMAND: (ua.VariantType.Boolean, bool),
}


def unece_unit_id(code: str) -> int:
    """EUInformation.UnitId from a UNECE common code (OPC UA Part 8)."""
    unit_id = 0
    for char in code:
        unit_id = unit_id << 8 | ord(char)
    return unit_id


def _eu_information(unit: str) -> ua.EUInformation:
    code, display, description = UNITS[unit]
    return ua.EUInformation(
        NamespaceUri=UNECE_NAMESPACE,
        UnitId=unece_unit_id(code),
        DisplayName=ua.LocalizedText(display),
        Description=ua.LocalizedText(description),
    )


@dataclass(frozen=True)
class SecureEndpoint:
    """The secured server: its port, certificate and key, and who may log in.

    `users` maps user names to passwords. `user_certificates` holds the certificates (DER or
    PEM) of users who log in with a certificate. `trusted_clients` holds the application
    certificates of clients allowed to connect (read at each new channel, like a PLC's trust
    list); None accepts any client certificate. A refused client certificate is saved to
    `rejected_clients` (when given), to be moved to `trusted_clients` by whoever trusts it.
    """

    port: int
    certificate: Path
    private_key: Path
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    user_certificates: Path | None = None
    trusted_clients: Path | None = None
    rejected_clients: Path | None = None


def ensure_server_certificate(pki: Path, host: str) -> tuple[Path, Path]:
    """The simulator's certificate and key in pki/own, created on first use (365 days).

    Its subject alternative names are the application URI, this machine's name and `host`.
    """
    cert, key = pki / "own" / "certs" / "plc_sim.der", pki / "own" / "private" / "plc_sim.pem"
    if cert.is_file() and key.is_file():
        return cert, key
    for folder in (cert.parent, key.parent):
        folder.mkdir(parents=True, exist_ok=True)
    private_key = cert_gen.generate_private_key()
    hosts = dict.fromkeys([socket.gethostname(), "localhost", host])
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(APPLICATION_URI)]
    names += [x509.DNSName(name) for name in hosts]
    certificate = cert_gen.generate_self_signed_app_certificate(
        private_key,
        "Shopfloor PLC simulator",
        {},
        names,
        [ExtendedKeyUsageOID.SERVER_AUTH],
        days=365,
    )
    key.write_bytes(cert_gen.dump_private_key_as_pem(private_key))
    key.chmod(0o600)
    cert.write_bytes(certificate.public_bytes(Encoding.DER))
    return cert, key


def load_users(text: str) -> dict[str, str]:
    """`name:password` per line (blank lines and # comments skipped)."""
    users = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, colon, password = line.partition(":")
        if not colon or not name.strip() or not password:
            raise ValueError(f"users line {number} is not name:password")
        users[name.strip()] = password
    return users


def _certificates_in(folder: Path | None) -> list[bytes]:
    """DER bytes of every certificate in `folder` (user certificates are read at start, the
    trusted clients at each new channel)."""
    if folder is None or not folder.is_dir():
        return []
    ders = []
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----BEGIN"):
            data = x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        ders.append(data)
    return ders


class _Logins(UserManager):
    """asyncua user manager of the secured server: known users only, passwords compared in
    constant time, never logged."""

    def __init__(self, users: Mapping[str, str], certificates: list[bytes]) -> None:
        self._users = dict(users)
        self._certificates = certificates

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is not None:
            expected = self._users.get(username)
            if expected is None or password is None:
                return None
            if hmac.compare_digest(expected.encode(), password.encode()):
                return User(role=UserRole.User, name=username)
            return None
        if certificate is not None:
            der = (
                certificate
                if isinstance(certificate, bytes)
                else certificate.public_bytes(Encoding.DER)
            )
            if der in self._certificates:
                return User(role=UserRole.User, name="certificate user")
        return None


class _TrustedClients:
    """Certificate validator: a client's application certificate must be in the trust folder
    and within its validity period, as a PLC with a trust list enforces. The folder is read at
    each new channel, so a certificate copied in is trusted without a restart; a refused one is
    saved to the rejected folder (named by its SHA-1 thumbprint), ready to be moved."""

    def __init__(self, folder: Path, rejected: Path | None) -> None:
        self._folder = folder
        self._rejected = rejected

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ServiceError(ua.StatusCodes.BadCertificateTimeInvalid)
        der = cert.public_bytes(Encoding.DER)
        trusted = await asyncio.to_thread(_certificates_in, self._folder)
        if der not in trusted:
            if self._rejected is not None:
                await asyncio.to_thread(_save_rejected, self._rejected, der)
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


def _save_rejected(folder: Path, der: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(der, usedforsecurity=False).hexdigest()
    (folder / f"{name}.der").write_bytes(der)


class _DiscoveryOnly(PermissionRuleset):
    """The rules of an unsecured channel to the secured server: discovery, nothing else (the
    session services themselves are not subject to rules in asyncua; reads, browses, calls and
    subscriptions are)."""

    def check_validity(self, user: Any, action_type: Any, body: Any) -> bool:
        return False


class _EncryptedPasswordsOnly(InternalServer):
    """asyncua's server core for the secured server: it refuses a password sent in the clear
    (`_require_encrypted_passwords` asks every client to encrypt it with the server's key)."""

    def decrypt_user_token(self, isession: Any, token: ua.UserNameIdentityToken) -> tuple[str, str]:
        if not token.EncryptionAlgorithm:
            raise ServiceError(ua.StatusCodes.BadIdentityTokenInvalid)
        return super().decrypt_user_token(isession, token)


def _require_encrypted_passwords(server: Server) -> None:
    """Ask every client to encrypt its password with the server's key (token policy = the
    endpoint's policy, even on SignAndEncrypt channels); `_EncryptedPasswordsOnly` refuses one
    sent in the clear."""
    for endpoint in server.iserver.endpoints:
        for token in endpoint.UserIdentityTokens:
            if token.TokenType == ua.UserTokenType.UserName:
                token.SecurityPolicyUri = endpoint.SecurityPolicyUri


def _connections(server: Server) -> list[Any]:
    """The client connections (protocols) of a started server."""
    assert server.bserver is not None, "the server was started"  # start() sets bserver
    return list(server.bserver.clients)


class OpcUaServer:
    """asyncua servers holding the OPC UA machines of a line; `publish` updates them per tick.

    The open server always runs; the secured one only when `secure` is given.
    """

    def __init__(
        self,
        spec: LineSpec,
        *,
        host: str,
        port: int,
        inject: InjectFault,
        clear: ClearFault,
        secure: SecureEndpoint | None = None,
        timestamps: Literal["change", "tick"] = "change",
        history: int = HISTORY_VALUES,
    ) -> None:
        self.spec = spec
        self.endpoint = f"opc.tcp://{host}:{port}/shopfloor/"
        self.secure_endpoint = (
            None if secure is None else f"opc.tcp://{host}:{secure.port}/shopfloor/"
        )
        self._secure = secure
        self._timestamps = timestamps
        self._history = history
        self._published: dict[tuple[str, str], Any] = {}  # the value each variable holds
        self._inject, self._clear = inject, clear
        self._servers: list[Server] = []
        self._machines_by_node: dict[ua.NodeId, str] = {}
        # (machine, signal) -> (node id, variant type, python conversion)
        self._variables: dict[tuple[str, str], tuple[ua.NodeId, ua.VariantType, Any]] = {}
        self.alarms = LineAlarms(spec, OPCUA_NAMESPACE_INDEX)

    def drop_connections(self) -> None:
        """Close every client connection, as a PLC that reboots its network stack (chaos)."""
        for server in self._servers:
            for protocol in _connections(server):
                protocol.transport.close()

    async def stall(self, seconds: float) -> None:
        """Stop reading client requests for `seconds`: a frozen PLC, its sockets open (chaos)."""
        transports = [p.transport for s in self._servers for p in _connections(s)]
        for transport in transports:
            transport.pause_reading()
        try:
            await asyncio.sleep(seconds)
        finally:
            for transport in transports:
                if not transport.is_closing():
                    transport.resume_reading()

    async def start(self) -> None:
        self._published.clear()  # a new address space: publish every value again
        for name in ("asyncua", "asyncua.server", "asyncua.common"):
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            self._servers.append(await self._start_open())
            if self._secure is not None:
                self._servers.append(await self._start_secured(self._secure))
            self._published.clear()  # values published while starting reached only some
        except BaseException:
            await self.stop()
            raise

    async def _start_open(self) -> Server:
        server = await self._new_server(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        await server.start()
        await self._historize(server)
        return server

    async def _historize(self, server: Server) -> None:
        """Keep the last `history` changes of every variable for HistoryRead (in memory)."""
        if self._history:
            nodes = [server.get_node(node_id) for node_id, _, _ in self._variables.values()]
            await server.historize_node_data_change(nodes, count=self._history)

    async def _start_secured(self, secure: SecureEndpoint) -> Server:
        assert self.secure_endpoint is not None
        user_certs = await asyncio.to_thread(_certificates_in, secure.user_certificates)
        logins = _Logins(secure.users, user_certs)
        server = await self._new_server(self.secure_endpoint, _EncryptedPasswordsOnly(logins))
        await server.load_certificate(str(secure.certificate))
        await server.load_private_key(secure.private_key)
        server.set_security_policy(SECURE_POLICIES)
        server.set_identity_tokens([ua.UserNameIdentityToken, ua.X509IdentityToken])
        if secure.trusted_clients is not None:
            validator = _TrustedClients(secure.trusted_clients, secure.rejected_clients)
            server.set_certificate_validator(validator)
        # Not advertised (endpoints come from set_security_policy): what a None channel gets.
        server._policies.append(
            security_policies.SecurityPolicyFactory(
                security_policies.SecurityPolicyNone,
                ua.MessageSecurityMode.None_,
                permission_ruleset=_DiscoveryOnly(),
            )
        )
        await server.start()
        await self._historize(server)
        _require_encrypted_passwords(server)
        return server

    async def _new_server(self, endpoint: str, iserver: InternalServer | None = None) -> Server:
        server = Server(iserver)
        server.iserver.bind_condition_methods = True  # ConditionRefresh
        await server.init()
        server.set_endpoint(endpoint)
        await server.set_application_uri(APPLICATION_URI)
        server.set_server_name(f"Shopfloor PLC simulator ({self.spec.line})")
        ns = await server.register_namespace(self.spec.namespace_uri)
        if ns != OPCUA_NAMESPACE_INDEX:
            raise RuntimeError(f"namespace index {ns}, expected {OPCUA_NAMESPACE_INDEX}")
        await self._build(server, ns)
        return server

    async def stop(self) -> None:
        servers, self._servers = self._servers, []
        self.alarms.forget()
        for server in servers:
            await server.stop()

    async def publish(self, values: dict[tuple[str, str], float], ts: datetime) -> None:
        """Write the variables whose value changed (every one with timestamps="tick") with a
        Good status and `ts` as source and server timestamp."""
        changed = []
        for key, (node_id, vtype, convert) in self._variables.items():
            value = convert(values[key])
            if self._timestamps == "tick" or self._published.get(key) != value:
                self._published[key] = value
                changed.append((node_id, ua.Variant(value, vtype)))
        stamp = ua.DateTime.combine(ts.date(), ts.timetz())  # asyncua's datetime type
        for server in self._servers:
            for node_id, variant in changed:
                await server.write_attribute_value(
                    node_id, ua.DataValue(variant, SourceTimestamp=stamp, ServerTimestamp=stamp)
                )
        await self.alarms.update(values, ts)

    async def _build(self, server: Server, ns: int) -> None:
        line = self.spec.line
        folder = await server.nodes.objects.add_folder(
            _string_node_id(line, ns), ua.QualifiedName(line, ns)
        )
        control = await folder.add_object(
            _string_node_id(f"{line}.Simulator", ns), ua.QualifiedName("Simulator", ns)
        )
        await self._add_methods(control, f"{line}.Simulator", ns, by_machine=True)
        await self.alarms.serve(server, folder.nodeid)
        for name, machine in self.spec.machines.items():
            if machine.protocol != "opcua":
                continue
            obj = await folder.add_object(
                _string_node_id(f"{line}.{name}", ns), ua.QualifiedName(name, ns)
            )
            self._machines_by_node[obj.nodeid] = name
            items = []
            for signal, s in machine.signals.items():
                kind = self.spec.signal_kind(name, signal)
                identifier = f"{line}.{name}.{signal}"
                node_id = _string_node_id(identifier, ns)
                vtype, convert = _VARIANTS[kind]
                self._variables[(name, signal)] = (node_id, vtype, convert)
                items += _variable_items(
                    obj.nodeid, identifier, ns, signal, kind, s.unit, s.min, s.max
                )
            for result in await obj.session.add_nodes(items):
                result.StatusCode.check()
            await self._add_methods(obj, f"{line}.{name}", ns, by_machine=False)

    async def _add_methods(self, obj: Node, prefix: str, ns: int, *, by_machine: bool) -> None:
        machine = [_argument("machine", ua.ObjectIds.String, "machine name")] if by_machine else []
        fault = _argument("fault", ua.ObjectIds.String, "fault name, e.g. bearing_wear")
        await obj.add_method(
            _string_node_id(f"{prefix}.InjectFault", ns),
            ua.QualifiedName("InjectFault", ns),
            self._call_inject,
            [
                *machine,
                fault,
                _argument("severity", ua.ObjectIds.Double, "0 < severity <= 1"),
                _argument("duration_s", ua.ObjectIds.Double, "seconds; <= 0 until cleared"),
            ],
            [],
        )
        await obj.add_method(
            _string_node_id(f"{prefix}.ClearFault", ns),
            ua.QualifiedName("ClearFault", ns),
            self._call_clear,
            [*machine, fault],
            [],
        )

    def _target(self, parent: ua.NodeId, args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        """The machine a call is about (the object's, or the first argument) and the rest."""
        values = tuple(arg.Value for arg in args)
        machine = self._machines_by_node.get(parent)
        if machine is not None:
            return machine, values
        if not values:
            return None, values
        return values[0], values[1:]

    async def _call_inject(self, parent: ua.NodeId, *args: ua.Variant) -> Any:
        machine, values = self._target(parent, args)
        if len(values) != 3:
            return _bad(ua.StatusCodes.BadArgumentsMissing, len(args))
        fault, severity, duration = values
        numbers = all(isinstance(v, int | float) for v in (severity, duration))
        if not isinstance(machine, str) or not isinstance(fault, str) or not numbers:
            return _bad(ua.StatusCodes.BadTypeMismatch, len(args))
        first = len(args) - 3  # index of `fault` among the arguments
        if not 0.0 < severity <= 1.0:
            return _bad(ua.StatusCodes.BadOutOfRange, len(args), position=first + 1)
        try:
            self._inject(machine, fault, severity, duration if duration > 0 else None)
        except FaultError:
            return _bad(ua.StatusCodes.BadInvalidArgument, len(args), position=first)
        return []

    async def _call_clear(self, parent: ua.NodeId, *args: ua.Variant) -> Any:
        machine, values = self._target(parent, args)
        if len(values) != 1 or not isinstance(machine, str) or not isinstance(values[0], str):
            return _bad(ua.StatusCodes.BadTypeMismatch, len(args))
        try:
            self._clear(machine, values[0])
        except FaultError:
            return _bad(ua.StatusCodes.BadInvalidArgument, len(args), position=len(args) - 1)
        return []


def _bad(code: int, count: int, position: int | None = None) -> ua.CallMethodResult:
    """A method result with an error status, pointing at the offending argument if known."""
    results = [_status(code if i == position else ua.StatusCodes.Good) for i in range(count)]
    return ua.CallMethodResult(StatusCode=_status(code), InputArgumentResults=results)


# asyncua types the fields of NodeId and StatusCode with its wire types (ua.String, ua.Int16,
# ua.Int32, ua.UInt32: subclasses of str and int), as its own typed code fills them
def _string_node_id(identifier: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(identifier), ua.Int16(ns))


def _numeric_node_id(identifier: int) -> ua.NodeId:
    return ua.NodeId(ua.Int32(identifier))


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def _argument(name: str, data_type: int, description: str) -> ua.Argument:
    return ua.Argument(
        Name=name,
        DataType=_numeric_node_id(data_type),
        ValueRank=ua.ValueRank.Scalar,
        Description=ua.LocalizedText(description),
    )


def _variable_items(
    parent: ua.NodeId,
    identifier: str,
    ns: int,
    signal: str,
    kind: SignalKind,
    unit: str,
    low: float,
    high: float,
) -> list[ua.AddNodesItem]:
    """AddNodes items for one variable (node id `identifier` in namespace `ns`) and its EURange
    and EngineeringUnits properties."""
    node_id = _string_node_id(identifier, ns)
    vtype, convert = _VARIANTS[kind]
    analog = kind in (SignalKind.ANALOG, SignalKind.TOTAL)
    type_definition = ua.ObjectIds.AnalogItemType if analog else ua.ObjectIds.BaseDataVariableType
    variable = _variable_item(
        parent,
        node_id,
        ua.QualifiedName(signal, ns),
        ua.Variant(convert(0), vtype),
        _numeric_node_id(vtype.value),
        ua.ObjectIds.HasComponent,
        type_definition,
    )
    properties = [
        _variable_item(
            node_id,
            _string_node_id(f"{identifier}.{prop}", ns),
            ua.QualifiedName(prop, 0),
            ua.Variant(value, ua.VariantType.ExtensionObject),
            _numeric_node_id(data_type),
            ua.ObjectIds.HasProperty,
            ua.ObjectIds.PropertyType,
        )
        for prop, value, data_type in (
            ("EURange", ua.Range(Low=low, High=high), ua.ObjectIds.Range),
            ("EngineeringUnits", _eu_information(unit), ua.ObjectIds.EUInformation),
        )
    ]
    return [variable, *properties]


def _variable_item(
    parent: ua.NodeId,
    node_id: ua.NodeId,
    name: ua.QualifiedName,
    value: ua.Variant,
    data_type: ua.NodeId,
    reference: int,
    type_definition: int,
) -> ua.AddNodesItem:
    attrs = ua.VariableAttributes(
        DisplayName=ua.LocalizedText(name.Name),
        Description=ua.LocalizedText(name.Name),
        Value=value,
        DataType=data_type,
        ValueRank=ua.ValueRank.Scalar,
        AccessLevel=ua.AccessLevel.CurrentRead.mask,
        UserAccessLevel=ua.AccessLevel.CurrentRead.mask,
        Historizing=False,
    )
    return ua.AddNodesItem(
        ParentNodeId=parent,
        ReferenceTypeId=_numeric_node_id(reference),
        RequestedNewNodeId=node_id,
        BrowseName=name,
        NodeClass=ua.NodeClass.Variable,
        NodeAttributes=attrs,
        TypeDefinition=_numeric_node_id(type_definition),
    )
