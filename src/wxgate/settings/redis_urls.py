"""Redis store URLs: which topology a `store.url` names, parsed without importing redis.

Settings validation (startup's one-line errors) and the Redis store read the same parse, so a
URL that starts the gateway is a URL the store can open.

  redis://[[user]:pw@]host:port[/db]   rediss://... (TLS)   unix:///path/redis.sock[?db=N]
      one Redis (standalone; a replica's address works until it is asked to write)
  redis+sentinel://[[user]:pw@]h1:p1[,h2:p2...]/service_name[/db]
      the primary of `service_name` as Sentinel names it, found again after every failover;
      the password is the data nodes' (Sentinels are asked without one)
  redis+cluster://[[user]:pw@]h1:p1[,h2:p2...]
      Redis Cluster; the nodes are only where discovery starts
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from wxgate.errors import ConfigError

SINGLE_SCHEMES = ("redis://", "rediss://", "unix://")
SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"
SCHEMES = (*SINGLE_SCHEMES, SENTINEL_SCHEME, CLUSTER_SCHEME)
_DEFAULT_PORT = {SENTINEL_SCHEME: 26379, CLUSTER_SCHEME: 6379}

Topology = Literal["single", "sentinel", "cluster"]


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis store URL names. `url` is the URL itself for `single` (redis-py parses
    it); `nodes` the Sentinels or Cluster seed nodes otherwise. Its repr hides the password:
    a target may end up in an error message or a log."""

    topology: Topology
    url: str = ""
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        where = ",".join(f"{h}:{p}" for h, p in self.nodes) or "(url)"
        secret = " password=***" if self.password else ""
        service = f" service={self.service!r}" if self.service else ""
        return f"<RedisTarget {self.topology} {where}{service} db={self.db}{secret}>"


def is_redis_url(url: str) -> bool:
    return url.startswith(SCHEMES)


def parse_redis_url(url: str) -> RedisTarget:
    """The topology `url` names, or ConfigError saying what is wrong (never naming the
    password: the message is printed at startup)."""
    if url.startswith(SINGLE_SCHEMES):
        return _single(url)
    for scheme in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        if url.startswith(scheme):
            return _multi(url, scheme)
    raise ConfigError(
        f"store.url {_redact(url)!r}: a Redis URL starts with "
        "redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"
    )


def _single(url: str) -> RedisTarget:
    if url.startswith("unix://"):
        if not url[len("unix://") :].startswith("/"):
            raise ConfigError(f"store.url {_redact(url)!r}: use unix:///absolute/path.sock")
        return RedisTarget("single", url=url)
    scheme = url.split("://", 1)[0]
    netloc, _, path = url.split("://", 1)[1].partition("/")
    hosts = netloc.rpartition("@")[2]
    if "," in hosts:
        raise ConfigError(
            f"store.url {_redact(url)!r}: several hosts need a topology: "
            f"redis+sentinel://{hosts}/<service_name> (Sentinels) or "
            f"redis+cluster://{hosts} (Redis Cluster); {scheme}:// names one Redis"
        )
    if not hosts:
        raise ConfigError(f"store.url {_redact(url)!r}: needs a host, e.g. {scheme}://host:6379/0")
    _host_port(hosts, 6379, url)
    db = path.partition("?")[0]
    if db and not db.isdigit():
        raise ConfigError(f"store.url {_redact(url)!r}: the database must be a number, not {db!r}")
    return RedisTarget("single", url=url)


def _multi(url: str, scheme: str) -> RedisTarget:
    rest = url[len(scheme) :]
    if "?" in rest:
        raise ConfigError(f"store.url {_redact(url)!r}: {scheme} URLs take no ?options")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    if not hosts:
        raise ConfigError(f"store.url {_redact(url)!r}: needs at least one host:port")
    nodes = tuple(_host_port(h, _DEFAULT_PORT[scheme], url) for h in hosts.split(","))
    if scheme == CLUSTER_SCHEME:
        if path:
            raise ConfigError(
                f"store.url {_redact(url)!r}: Redis Cluster has one database (no /db or path)"
            )
        return RedisTarget("cluster", nodes=nodes, username=username, password=password)
    service, _, db = path.partition("/")
    if not service:
        raise ConfigError(
            f"store.url {_redact(url)!r}: name the Sentinel service: "
            f"{scheme}host:26379/<service_name>[/db]"
        )
    if db and not db.isdigit():
        raise ConfigError(f"store.url {_redact(url)!r}: the database must be a number, not {db!r}")
    return RedisTarget(
        "sentinel",
        nodes=nodes,
        service=unquote(service),
        db=int(db or 0),
        username=username,
        password=password,
    )


def _host_port(item: str, default_port: int, url: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, tail = item[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ConfigError(f"store.url {_redact(url)!r}: empty host in {item!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"store.url {_redact(url)!r}: bad port in {item!r}")
    return host, int(port_text)


def _redact(url: str) -> str:
    """`url` with the password replaced, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{hosts}{slash}{path}"
