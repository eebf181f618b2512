"""Every MQTT name edged is configured with, checked in one place against what a broker will take.

A name a broker refuses is found at start (exit 78, naming the variable), not as a broker that drops every
connection, an exception in paho's thread or events refused one by one:

- a **topic level** (`EDGED_DEVICE_ID`, `EDGED_MQTT__TOPIC_PREFIX`): valid UTF-8, no control characters (C0,
  DEL, C1: brokers drop the connection on U+0000 and Mosquitto on the others), none of the wildcards `+ #` nor
  the level separator `/`, no leading `$` (topics beginning with `$` are the broker's, e.g. `$SYS`: publishing
  there is refused), no surrounding spaces, at most MAX_LEVEL_BYTES bytes of UTF-8;
- a **client id** (`EDGED_MQTT__CLIENT_ID`, default `edged-<device id>`): valid UTF-8 without control
  characters, at most MAX_CLIENT_ID_BYTES bytes (the protocol's length field holds 65535; paho's thread dies
  beyond it);
- a **host** (`EDGED_MQTT__HOST`): a host name (RFC 1123 labels), an IPv4 or an IPv6 address; a port, a scheme
  or IPv6 brackets get a hint saying where they go instead.

`stock_host_warning` says when the device id is a stock image's host name (`raspberrypi`...): kiosks cloned
from one SD card then share one device id and client id, knock each other off the broker and publish the same
`seq` numbers.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

MAX_LEVEL_BYTES = 128
MAX_CLIENT_ID_BYTES = 256
_WILDCARDS = set("+#/")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")  # underscores: not RFC 1123, but common (Docker) and harmless
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

# Host names that images ship with: a device id taken from one of these is probably shared by every clone.
STOCK_HOST_NAMES = frozenset({
    "raspberrypi", "raspberry", "pi", "jetson", "jetson-nano", "nano", "tegra-ubuntu", "ubuntu", "debian",
    "localhost", "localhost-localdomain", "orangepi", "rockpi", "radxa", "odroid", "beaglebone", "armbian",
    "dietpi", "linux", "edge", "kiosk", "edged", "raspberrypi4", "rpi", "rpi4", "rpi5", "nvidia",
})


def _control(value: str) -> str | None:
    for c in value:
        if unicodedata.category(c) == "Cc":
            return f"a control character (U+{ord(c):04X})"
        if unicodedata.category(c) == "Cs":
            return "bytes that are not valid UTF-8"
    return None


def _utf8_len(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def check_topic_level(value: str) -> str:
    """`value` if it can be one level of a topic edged publishes on; ValueError saying what is wrong."""
    if not value:
        raise ValueError("must not be empty")
    bad = _control(value)
    if bad:
        raise ValueError(f"contains {bad}, which MQTT brokers refuse, got {value!r}")
    found = sorted(set(value) & _WILDCARDS)
    if found:
        raise ValueError(f"must not contain the MQTT topic characters {' '.join(found)}, got {value!r}")
    if value.startswith("$"):
        raise ValueError(f"must not start with $ (topics beginning with $ belong to the broker, e.g. $SYS), "
                         f"got {value!r}")
    if value != value.strip():
        raise ValueError(f"must not begin or end with spaces, got {value!r}")
    size = _utf8_len(value)
    if size > MAX_LEVEL_BYTES:
        raise ValueError(f"is {size} bytes long; at most {MAX_LEVEL_BYTES} bytes of UTF-8")
    return value


def check_topic(value: str) -> str:
    """`value` if it is a topic of one or more levels edged may publish or subscribe on (no wildcards)."""
    if not value:
        raise ValueError("must not be empty")
    for level in value.split("/"):
        if not level:
            raise ValueError(f"must not have empty levels (a leading, trailing or double /), got {value!r}")
        try:
            check_topic_level(level)
        except ValueError as exc:
            raise ValueError(f"level {level!r}: {exc}") from None
    return value


def check_client_id(value: str) -> str:
    """`value` if a broker takes it as a client id; ValueError saying what is wrong."""
    if not value:
        raise ValueError("must not be empty")
    bad = _control(value)
    if bad:
        raise ValueError(f"contains {bad}, which MQTT brokers refuse, got {value!r}")
    size = _utf8_len(value)
    if size > MAX_CLIENT_ID_BYTES:
        raise ValueError(f"is {size} bytes long; at most {MAX_CLIENT_ID_BYTES} bytes of UTF-8")
    return value


def check_host(value: str) -> str:
    """`value` if it is a host name, an IPv4 or an IPv6 address; ValueError with a hint for what it holds else."""
    host = value.strip()
    if not host:
        raise ValueError("must not be empty")
    scheme = _SCHEME.match(host)
    if scheme:
        rest = host[scheme.end():].split("/")[0].rsplit("@", 1)[-1]
        name, port = (rest[1:].partition("]")[0], rest.rpartition("]:")[2]) if rest.startswith("[") else (
            rest.partition(":")[0], rest.partition(":")[2])
        where = f"EDGED_MQTT__PORT={port}" if port else "EDGED_MQTT__PORT"
        tls = " and EDGED_MQTT__TLS=true" if scheme.group(1).lower() in ("mqtts", "ssl", "tls", "wss") else ""
        raise ValueError(f"takes a host name or address without a scheme: write {name or 'the host'!r} "
                         f"(the port goes in {where}{tls}), got {value!r}")
    if host.startswith("["):
        inner, _, after = host[1:].partition("]")
        port = after.removeprefix(":")
        hint = f", and {port} in EDGED_MQTT__PORT" if port else ""
        raise ValueError(f"takes an IPv6 address without brackets: write {inner!r}{hint}, got {value!r}")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if host.count(":") == 1:
        name, port = host.split(":")
        raise ValueError(f"takes the host alone: write {name!r} and put the port in EDGED_MQTT__PORT={port}, "
                         f"got {value!r}")
    if ":" in host:
        raise ValueError(f"is neither a host name nor an IP address, got {value!r}")
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"is not a host name (letters, digits and - in dot-separated labels) nor an IP address, "
                         f"got {value!r}")
    return host


def stock_host_warning(device_id: str, from_host_name: bool, client_id_set: bool) -> str | None:
    """A warning when the device id is a stock image's host name, which every clone of the image shares."""
    if not from_host_name or device_id.lower() not in STOCK_HOST_NAMES:
        return None
    what = "device id and client id" if not client_id_set else "device id"
    return (f"the {what} come from the host name {device_id!r}, which images ship with: kiosks cloned from one "
            f"image then knock each other off the broker and publish the same seq numbers. Set EDGED_DEVICE_ID "
            f"to a name unique to this device (or give it its own host name)")
