"""What one client may cost the sticky server: connection limits, timeouts, trusted proxies (pure).

The values are checked here, so that ``StickyServer(...)`` and ``storekit serve``
fail with the same messages; the worker (see `guard`) and the master's hand-off
(see `handoff`) enforce them.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from storekit.codec import check_seconds

__all__ = [
    "CONNECTION_LIMIT",
    "FD_RESERVE",
    "HEADER_TIMEOUT",
    "IDLE_TIMEOUT",
    "PER_ADDRESS_LIMIT",
    "Limits",
    "Network",
    "check_limit",
    "check_networks",
    "check_timeout",
    "host_of",
    "make_limits",
    "trusted",
]

#: Open connections one worker serves at most (``--connection-limit``).
CONNECTION_LIMIT = 1000
#: Open connections one client address holds on its worker at most (``--per-address-limit``).
PER_ADDRESS_LIMIT = 50
#: Seconds a connection has to send a whole request head (``--header-timeout``).
HEADER_TIMEOUT = 10.0
#: Seconds a kept-alive connection may sit with no request (``--idle-timeout``).
IDLE_TIMEOUT = 60.0
#: Descriptors a worker keeps for itself below its RLIMIT_NOFILE (files the app opens, pipes, ...).
FD_RESERVE = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Limits:
    """The protections of one server; the defaults are the documented ones."""

    connection_limit: int = CONNECTION_LIMIT
    per_address_limit: int = PER_ADDRESS_LIMIT
    header_timeout: float = HEADER_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    trusted_proxies: tuple[Network, ...] = ()

    def connections_for(self, nofile: int) -> int:
        """The connection limit a worker whose RLIMIT_NOFILE is `nofile` can keep (at least 1)."""
        if nofile <= 0:  # RLIM_INFINITY shows as -1
            return self.connection_limit
        return max(1, min(self.connection_limit, nofile - FD_RESERVE))

    def trusts(self, host: str) -> bool:
        """Whether `host` is a configured proxy: its forwarded header counts, no per-address limit."""
        return bool(self.trusted_proxies) and trusted(host, self.trusted_proxies)

    def describe_trust(self, header: str | None) -> str:
        """How header routing treats forwarded headers, for the startup line."""
        name = header or "the address header"
        if not self.trusted_proxies:
            return (
                f"{name} trusted from no peer (--trusted-proxy ADDRESS to trust a proxy): "
                "a forwarded header from any peer is ignored and the peer address routes"
            )
        nets = ", ".join(str(net) for net in self.trusted_proxies)
        return f"{name} trusted from {nets}; from any other peer it is ignored and the peer address routes"


def make_limits(
    *,
    connection_limit: object = CONNECTION_LIMIT,
    per_address_limit: object = PER_ADDRESS_LIMIT,
    header_timeout: object = HEADER_TIMEOUT,
    idle_timeout: object = IDLE_TIMEOUT,
    trusted_proxies: Iterable[object] = (),
) -> Limits:
    """`Limits` from option values, each checked, or ValueError naming the option and the value."""
    return Limits(
        connection_limit=check_limit(connection_limit, "--connection-limit"),
        per_address_limit=check_limit(per_address_limit, "--per-address-limit"),
        header_timeout=check_timeout(header_timeout, "--header-timeout"),
        idle_timeout=check_timeout(idle_timeout, "--idle-timeout"),
        trusted_proxies=check_networks(trusted_proxies),
    )


def check_limit(value: object, flag: str) -> int:
    """`value` as an int >= 1, or ValueError naming `flag` and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{flag} expects a whole number of connections, 1 or more, got {value!r}")
    return value


def check_timeout(value: object, flag: str) -> float:
    """`value` as a float of seconds > 0, or ValueError naming `flag` and the value
    (:func:`storekit.codec.check_seconds`, which takes no None here)."""
    seconds = check_seconds(flag, value, hint="; for example 10")
    assert seconds is not None  # none=None: None is refused
    return seconds


def check_networks(values: Iterable[object], flag: str = "--trusted-proxy") -> tuple[Network, ...]:
    """Each of `values` (``127.0.0.1``, ``10.0.0.0/8``, ``::1``) as a network, or ValueError quoting it."""
    if isinstance(values, str):
        values = [values]
    nets: list[Network] = []
    for value in values:
        try:
            net = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            raise ValueError(
                f"{flag} expects an IP address or network, e.g. 127.0.0.1 or 10.0.0.0/8, got {value!r}"
            ) from None
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
            mapped = net.network_address.ipv4_mapped
            net = ipaddress.ip_network(f"{mapped}/{max(0, net.prefixlen - 96)}")
        nets.append(net)
    return tuple(nets)


def host_of(address: object) -> str:
    """The host part of a socket address, ``('127.0.0.1', 5000)`` -> ``'127.0.0.1'``."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


@functools.lru_cache(maxsize=4096)
def _parse(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def trusted(host: str, networks: tuple[Network, ...]) -> bool:
    """Whether `host` (an IPv4-mapped IPv6 address counts as IPv4) is in one of `networks`."""
    ip = _parse(host)
    return ip is not None and any(ip.version == net.version and ip in net for net in networks)
