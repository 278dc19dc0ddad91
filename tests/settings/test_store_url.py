"""store.url in settings: every Redis topology's URL is accepted, a malformed one refused at
load with one line that says which form to use and never shows the password."""

from __future__ import annotations

import pytest

from wxgate.errors import ConfigError
from wxgate.settings import from_dict
from wxgate.settings.redis_urls import RedisTarget, parse_redis_url


def _load(url: str) -> None:
    from_dict({"store": {"url": url}})


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///wxgate.db",
        "redis://127.0.0.1:6379/0",
        "redis://:pw@h:6379/2",
        "rediss://user:pw@redis.example:6380/0",
        "unix:///run/redis/redis.sock?db=3",
        "redis+sentinel://s1:26379,s2:26380/mymaster",
        "redis+sentinel://:pw@s1:26379/mymaster/4",
        "redis+cluster://n1:7000,n2:7001,[::1]:7002",
    ],
)
def test_every_topology_is_accepted(url: str) -> None:
    _load(url)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("redis://h1:6379,h2:6379/0", r"redis\+sentinel://h1:6379,h2:6379/<service_name>"),
        ("redis://h1:6379,h2:6379/0", r"redis\+cluster://h1:6379,h2:6379"),
        ("redis+sentinel://s1:26379", "name the Sentinel service"),
        ("redis+sentinel://s1:26379/m/x", "database must be a number"),
        ("redis+cluster://n1:7000/0", "one database"),
        ("redis+cluster://", "at least one host"),
        ("redis://h:99999/0", "bad port"),
        ("redis:///0", "needs a host"),
        ("unix://relative.sock", "absolute"),
        ("memcached://h:11211", "must start with sqlite://"),
    ],
)
def test_bad_urls_are_refused_with_the_form_to_use(url: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        _load(url)


def test_the_password_never_appears_in_the_error_or_the_repr() -> None:
    with pytest.raises(ConfigError) as caught:
        _load("redis://:s3cr3t-pw@h1:6379,h2:6379/0")
    assert "s3cr3t-pw" not in str(caught.value)
    assert "***" in str(caught.value)
    target = parse_redis_url("redis+sentinel://app:s3cr3t-pw@s1:26379,s2/primary/2")
    assert "s3cr3t-pw" not in repr(target)
    assert target == RedisTarget(
        "sentinel",
        nodes=(("s1", 26379), ("s2", 26379)),
        service="primary",
        db=2,
        username="app",
        password="s3cr3t-pw",
    )


def test_cluster_seed_nodes_default_to_6379() -> None:
    target = parse_redis_url("redis+cluster://n1,n2:7001")
    assert target.topology == "cluster"
    assert target.nodes == (("n1", 6379), ("n2", 7001))
