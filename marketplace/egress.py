"""Where devices may connect: the egress policy shared by device validation (when a device
is saved) and the runtime's clients (when they connect).

A device is a customer's target, reached from inside the platform's network. Without a
rule an HTTP device could reach cloud metadata (169.254.169.254) or internal services, and
a PostgreSQL device the platform's own database, which holds every organization's data.

- ``EgressPolicy.refusal(address, port)`` says why an *address* may not be connected to,
  or ``None``. It is checked on the addresses a name resolves to, at connect time, and the
  connection is then made to exactly that address, so a name cannot resolve to one
  address when checked and another when used (DNS rebinding).
- The platform's own services (its databases, broker, caches and any listed in
  ``JUNCTION_DEVICE_DENY_SERVICES``) are always refused, whatever the other settings.
  When a service is on this machine (a loopback address, or one of the machine's own), every
  address of this machine is refused on its port: ``127.1``, ``::1``,
  ``[::ffff:127.0.0.1]`` and the machine's network address may all reach the same server.
- Then ``JUNCTION_DEVICE_DENY_NETWORKS`` (link-local/metadata, multicast, 0.0.0.0/8 …) is
  refused, ``JUNCTION_DEVICE_ALLOW_NETWORKS`` allowed, and loopback/private/ULA addresses
  are allowed only with ``JUNCTION_DEVICE_ALLOW_PRIVATE`` (on in development, off in
  production).
- ``literal_addresses(host)`` reads a host as written in a URL or DSN the way the
  resolver would (``127.1``, ``0x7f000001``, ``2130706433``, ``[::1]``, ``localhost``),
  so the save-time check refuses the same spellings that the connect-time check would.

Only ``policy()`` and ``platform_services()`` read Django settings; the rest is plain Python.
"""
from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Always refused whatever the settings: these are "this machine" or nothing at all.
_UNSPECIFIED = (ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("::/128"))
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# Reachable only from inside the platform's network: allowed with JUNCTION_DEVICE_ALLOW_PRIVATE.
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128",  # loopback
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # carrier-grade NAT, used inside some clouds
    "fc00::/7",  # unique local (ULA)
    "fec0::/10",  # site-local (deprecated, still routed by some)
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(Exception):
    """A device's address is refused by the egress policy; the message says why."""


@dataclass(frozen=True)
class Service:
    """One of the platform's own services: ``kind`` names it in messages."""
    kind: str  # "database", "broker", "cache", "service"
    host: str
    port: int
    addresses: frozenset  # of Address, the host resolved when the policy was built


@dataclass(frozen=True)
class EgressPolicy:
    deny: tuple[Network, ...] = ()
    allow: tuple[Network, ...] = ()
    allow_private: bool = False
    services: tuple[Service, ...] = ()
    # This machine's own addresses besides loopback (``own_addresses()``).
    own: frozenset = frozenset()

    def refusal(self, address: str | Address, port: int) -> str | None:
        """Why ``address``:``port`` may not be a device's, or ``None`` when it may."""
        ip = parse_address(address)
        if ip is None:
            return f"address {address} is not an IP address"
        shown = str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)
        for candidate in _meanings(ip):
            service = self._service_at(candidate, port)
            if service is not None:
                return f"address {shown} is the platform's own {service.kind} and cannot be a device"
        reasons = [self._network_refusal(candidate) for candidate in _meanings(ip)]
        reason = next((r for r in reasons if r), None)
        return f"address {shown} {reason}" if reason else None

    def check(self, address: str | Address, port: int) -> None:
        reason = self.refusal(address, port)
        if reason:
            raise EgressRefused(reason)

    def host_refusal(self, host: str, port: int) -> str | None:
        """The save-time check of a host as written: a platform service's own name, or a
        literal address (any spelling) that is refused. ``None`` for other names: those
        are checked when connecting, on what they resolve to then."""
        name = host.strip("[]").lower().rstrip(".")
        for service in self.services:
            if service.port == port and name == service.host.strip("[]").lower().rstrip("."):
                return f"host {host} is the platform's own {service.kind} and cannot be a device"
        for ip in literal_addresses(host) or ():
            reason = self.refusal(ip, port)
            if reason:
                return reason
        return None

    def _service_at(self, ip: Address, port: int) -> Service | None:
        for service in self.services:
            if service.port != port:
                continue
            if ip in service.addresses:
                return service
            # A service on this machine is reached through any address of this machine (it
            # may listen on all of them).
            if self._local(ip) and any(self._local(a) for a in service.addresses):
                return service
        return None

    def _local(self, ip: Address) -> bool:
        return _in(ip, _LOOPBACK + _UNSPECIFIED) or ip in self.own

    def _network_refusal(self, ip: Address) -> str | None:
        if _in(ip, _UNSPECIFIED):
            return "is not a device's address"
        if _in(ip, self.deny):
            return "is in a network closed to devices"
        if _in(ip, self.allow):
            return None
        if _in(ip, PRIVATE_NETWORKS) and not self.allow_private:
            return "is private to the platform's network and cannot be a device"
        return None


def _in(ip: Address, networks: Iterable[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def _meanings(ip: Address) -> list[Address]:
    """The address and the IPv4 address it carries (IPv4-mapped, NAT64, 6to4), which is
    where a connection to it may end up."""
    found = [ip]
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            found.append(embedded)
    return found


def parse_address(value: str | Address) -> Address | None:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    try:
        return ipaddress.ip_address(str(value).strip("[]").partition("%")[0])
    except ValueError:
        return None


_INET_ATON = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+)){0,3}")


def literal_addresses(host: str) -> list[Address] | None:
    """The addresses a host written as a literal means, as the resolver reads it, or
    ``None`` for a name that needs a lookup. ``inet_aton`` spellings count (``127.1``,
    ``0x7f000001``, ``2130706433``, ``0177.0.0.1``), and ``localhost`` (with its
    ``*.localhost`` names) is loopback without asking DNS."""
    host = host.strip().strip("[]")
    ip = parse_address(host)
    if ip is not None:
        return [ip]
    if _INET_ATON.fullmatch(host):
        try:
            return [ipaddress.IPv4Address(socket.inet_aton(host))]
        except OSError:
            return None
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return [ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")]
    return None


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


# --- The platform's own services, from Django settings ------------------------------------

_DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "mysql": 3306, "redis": 6379, "rediss": 6379,
                  "amqp": 5672, "amqps": 5671, "pyamqp": 5672, "memcache": 11211, "pymemcache": 11211}


def _url_endpoints(url: str) -> list[tuple[str, int]]:
    """host:port of each server in a broker/cache URL (``;``-separated fail-over lists too)."""
    found = []
    for part in re.split(r"[;,\s]+", url or ""):
        if "://" not in part:
            if re.fullmatch(r"[\w.\-\[\]:]+:\d+", part):  # memcached's plain host:port
                host, _, port = part.rpartition(":")
                found.append((host, int(port)))
            continue
        parts = urlsplit(part)
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme.split("+")[0])
        except ValueError:
            continue
        if parts.hostname and port:
            found.append((parts.hostname, port))
    return found


def platform_endpoints() -> tuple[tuple[str, str, int], ...]:
    """(kind, host, port) of the platform's own services according to the settings."""
    from django.conf import settings

    found: list[tuple[str, str, int]] = []
    for database in settings.DATABASES.values():
        engine = database.get("ENGINE", "")
        default_port = 5432 if "postgres" in engine else 3306 if "mysql" in engine else None
        if default_port is None:
            continue
        host = str(database.get("HOST") or "")
        # No host (or a socket folder) is a Unix socket: the server is on this machine,
        # and its TCP port on loopback reaches the same server.
        if not host or host.startswith("/"):
            host = "localhost"
        found.append(("database", host, int(database.get("PORT") or default_port)))
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        for host, port in _url_endpoints(str(getattr(settings, name, "") or "")):
            found.append(("broker", host, port))
    for cache in getattr(settings, "CACHES", {}).values():
        locations = cache.get("LOCATION") or []
        for location in [locations] if isinstance(locations, str) else locations:
            for host, port in _url_endpoints(str(location)):
                found.append(("cache", host, port))
    for item in getattr(settings, "JUNCTION_DEVICE_DENY_SERVICES", []):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            found.append(("service", host, int(port)))
    return tuple(found)


@functools.lru_cache(maxsize=32)
def _services(endpoints: tuple[tuple[str, str, int], ...]) -> tuple[Service, ...]:
    services = []
    for kind, host, port in endpoints:
        addresses: set[Address | None] = set(literal_addresses(host) or ())
        if not addresses:
            try:
                addresses = {parse_address(str(info[4][0])) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
            except OSError:
                addresses = set()  # the name still matches by itself (EgressPolicy.host_refusal)
        services.append(Service(kind, host, port, frozenset(a for a in addresses if a is not None)))
    return tuple(services)


@functools.cache
def own_addresses() -> frozenset[Address]:
    """This machine's addresses besides loopback: those of its host name and the source
    address of its default route (a UDP "connect" sends nothing)."""
    found: set[str] = set()
    try:
        found |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)}
    except OSError:
        pass
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                found.add(sock.getsockname()[0])
        except OSError:
            pass
    return frozenset(a for a in map(parse_address, found) if a is not None and not _in(a, _LOOPBACK + _UNSPECIFIED))


@functools.lru_cache(maxsize=32)
def _policy(deny: tuple[str, ...], allow: tuple[str, ...], allow_private: bool,
            endpoints: tuple[tuple[str, str, int], ...]) -> EgressPolicy:
    return EgressPolicy(deny=networks(deny), allow=networks(allow), allow_private=allow_private,
                        services=_services(endpoints), own=own_addresses())


def policy() -> EgressPolicy:
    """The policy of the current settings (built once per distinct settings)."""
    from django.conf import settings

    return _policy(tuple(settings.JUNCTION_DEVICE_DENY_NETWORKS), tuple(settings.JUNCTION_DEVICE_ALLOW_NETWORKS),
                   bool(settings.JUNCTION_DEVICE_ALLOW_PRIVATE), platform_endpoints())


# --- PostgreSQL DSNs ------------------------------------------------------------------------

def postgres_server(dsn: str) -> tuple[str, int]:
    """The one (host, port) a PostgreSQL DSN connects to. Raises EgressRefused for what
    cannot be checked: no host or a socket folder (a Unix socket on the platform's own
    machine, where the platform's database listens), several hosts, ``hostaddr`` (the
    runtime sets it to the address it checked), ``service`` (a connection defined in a
    file on the platform's machine) and ``passfile`` (the platform's passwords)."""
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Error as exc:
        raise EgressRefused(f"the DSN is not valid: {str(exc).splitlines()[0][:200]}") from None
    for name in ("hostaddr", "service", "servicefile", "passfile"):
        if params.get(name):
            raise EgressRefused(f"a device's DSN cannot set {name}: write the server as its host")
    host, port = str(params.get("host") or ""), str(params.get("port") or "5432")
    if "," in host or "," in port:
        raise EgressRefused("a device's DSN names one server: several hosts are refused")
    if not host or host.startswith(("/", "@")):
        raise EgressRefused("a PostgreSQL device needs a host name or address: Unix sockets are refused")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise EgressRefused(f"port {port} is not a valid port")
    return host, int(port)
