"""/metrics beyond test_e2e_metrics.py: lease takeovers after a forced lease expiry,
token fetches against the simulator's count, receipts and the accept -> delivered histogram
against what was delivered, pauses, the errcode label's bound, and that every metric the alert
rules and the Grafana dashboard use is in a real scrape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from support.e2e import APP_A, DATA, TEMPLATE, db_query, running_rig, wait_status
from wxgate.metrics import Metrics
from wxgate.models import AppPause, Message, new_id
from wxgate.sim.config import Faults

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "wxgate.json"
NORMAL = 200
CRASHED = 30  # messages leased by a "worker" that then vanished


Parsed = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> tuple[Parsed, dict[str, str]]:
    """(sample name -> [(labels, value)], family name -> type); fails on invalid text."""
    samples: Parsed = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), s.value))
    return samples, types


def total(parsed: Parsed, name: str, **match: str) -> float:
    return sum(
        v for labels, v in parsed.get(name, []) if all(labels.get(k) == m for k, m in match.items())
    )


def queryable_names(types: dict[str, str]) -> set[str]:
    """The names PromQL can use for each family in a scrape (a counter's _total, a
    histogram's _bucket/_sum/_count...), whether or not it has samples yet."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created", ""),
        "gauge": ("",),
    }
    return {name + sfx for name, kind in types.items() for sfx in suffixes.get(kind, ("",))}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bwxgate_[a-z0-9_]+\b", expr))


def rule_expressions() -> tuple[list[str], set[str], set[str]]:
    """(every expr, recording rule names defined, recording rule names used)."""
    doc = yaml.safe_load(ALERTS.read_text())
    exprs, defined = [], set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            exprs.append(rule["expr"])
            if "record" in rule:
                defined.add(rule["record"])
    used = {u for e in exprs for u in re.findall(r"\bwxgate:[a-z0-9_:]+", e)}
    return exprs, defined, used


def dashboard_expressions() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


async def test_series_add_up_after_a_forced_lease_expiry(tmp_path: Path) -> None:
    async with running_rig(tmp_path, (APP_A,)) as rig:
        store, now = rig.runtime.store, rig.runtime.clock.now()
        assert store is not None
        # A worker leases messages due a moment from now and dies: its leases must expire
        # before the pool may take the messages over.
        crashed = [
            Message(
                id=new_id(),
                app=APP_A.name,
                touser=f"o_crashed{i}",
                template_id=TEMPLATE,
                data={k: {"value": v} for k, v in DATA.items()},
                created_at=now,
                not_before=now + 0.3,
            )
            for i in range(CRASHED)
        ]
        await store.enqueue(crashed)
        held = await store.lease(100, 0.5, now + 0.3)
        assert {m.id for m in held} == {m.id for m in crashed}
        await rig.api.send_many(NORMAL, lambda i: f"o_m{i}", concurrency=16)
        await wait_status(rig.api, "delivered", NORMAL + CRASHED, timeout_s=30)
        parsed, _ = parse(await rig.api.metrics_text())

        assert total(parsed, "wxgate_lease_expirations_total", app="a") == CRASHED
        delivered = total(parsed, "wxgate_receipts_total", app="a", result="delivered")
        assert delivered == rig.sim.state.delivered == NORMAL + CRASHED
        assert total(parsed, "wxgate_accept_to_delivered_seconds_count", app="a") == delivered
        assert total(parsed, "wxgate_accept_to_sent_seconds_count", app="a") == NORMAL + CRASHED
        assert total(parsed, "wxgate_messages_accepted_total", app="a") == NORMAL  # via the API

        fetches = total(parsed, "wxgate_token_fetches_total", app="a")
        assert fetches == rig.sim.state.token_fetches[APP_A.appid] >= 1
        assert total(parsed, "wxgate_token_fetch_failures_total", app="a") == 0
        assert total(parsed, "wxgate_app_paused", app="a") == 0

        # A pause written to the store shows in every process's scrape.
        await store.set_pause(AppPause(APP_A.name, rig.runtime.clock.now() + 60, "daily quota"))
        parsed, _ = parse(await rig.api.metrics_text())
        assert total(parsed, "wxgate_app_paused", app="a") == 1


async def test_receipts_that_beat_their_ack_are_counted(tmp_path: Path) -> None:
    """WeChat may push a receipt before the answer to the send reaches us (here every answer
    comes 0.4 s late and the receipt goes out at once): the receipt waits in the store, the
    ack applies it, and it counts in the receipt series like any other."""
    n = 20
    late_answers = Faults(stall_rate=1.0, stall_s=0.4)
    sim_kw = {"faults": late_answers, "receipt_delay_s": 0.0}
    async with running_rig(tmp_path, (APP_A,), sim_kw=sim_kw) as rig:
        await rig.api.send_many(n, lambda i: f"o_early{i}", concurrency=n)
        await wait_status(rig.api, "delivered", n, timeout_s=30)
        # They did come first: each one was in before its message was sent (acked).
        early = db_query(
            tmp_path / "wxgate.db",
            "SELECT COUNT(*) FROM receipts r JOIN messages m "
            "ON m.app = r.app AND m.wechat_msgid = r.wechat_msgid WHERE r.received_at < m.sent_at",
        )
        assert early == [(n,)]
        parsed, _ = parse(await rig.api.metrics_text())
        assert total(parsed, "wxgate_receipts_total", app="a", result="delivered") == n
        assert total(parsed, "wxgate_accept_to_delivered_seconds_count", app="a") == n


async def test_every_metric_in_the_rules_and_the_dashboard_is_scraped(tmp_path: Path) -> None:
    exprs, defined, used = rule_expressions()
    assert used <= defined, f"recording rules used but not defined: {used - defined}"
    alerts = {
        r.get("alert") for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]
    }
    assert {
        "WxgateDeliveryStalled",
        "WxgateFailureRatioHigh",
        "WxgateAppPaused",
        "WxgateBreakerOpen",
        "WxgateQueueAgeHigh",
        "WxgateTokenFetchFailing",
    } <= alerts
    panels = dashboard_expressions()
    assert len(panels) >= 20
    async with running_rig(tmp_path, (APP_A,)) as rig:
        await rig.api.send_many(5, lambda i: f"o_q{i}")
        await wait_status(rig.api, "delivered", 5, timeout_s=10)
        _, types = parse(await rig.api.metrics_text())
    scraped = queryable_names(types)
    wanted: dict[str, set[str]] = {}
    for where, group in (("alerts.yml", exprs), ("wxgate.json", panels)):
        for expr in group:
            for name in metric_names(expr):
                wanted.setdefault(name, set()).add(where)
    missing = {name: sorted(w) for name, w in wanted.items() if name not in scraped}
    assert not missing, f"not in a real scrape: {missing}"
    assert len(wanted) >= 15


def test_unknown_errcodes_share_one_label_value() -> None:
    metrics = Metrics(known_errcodes=[40003, -1])
    for code in (40003, 61234, 70001, 70001):
        metrics.on_failed("a", "retry", code)
    parsed, _ = parse_registry(metrics)
    labels = {s[0]["errcode"]: s[1] for s in parsed["wxgate_send_failures_total"]}
    assert labels == {"40003": 1, "other": 3}
    # /v1/stats still sees the real codes.
    assert metrics.failures_by_errcode() == {
        40003: {"retry": 1},
        61234: {"retry": 1},
        70001: {"retry": 2},
    }


def parse_registry(metrics: Metrics) -> tuple[Parsed, dict[str, str]]:
    return parse(generate_latest(metrics.registry).decode())


async def test_unrouted_http_methods_share_one_label(tmp_path: Path) -> None:
    """Methods the HTTP parser knows but no route uses (WebDAV, SSDP...) share one label."""
    import aiohttp

    async with running_rig(tmp_path, (APP_A,)) as rig, aiohttp.ClientSession() as s:
        for verb in ("PROPFIND", "M-SEARCH", "PURGE"):
            async with s.request(verb, f"{rig.runtime.url}/healthz") as r:
                assert r.status == 405
        parsed, _ = parse(await rig.api.metrics_text())
    methods = {labels["method"] for labels, _ in parsed.get("wxgate_http_requests_total", [])}
    assert "OTHER" in methods
    assert not methods & {"PROPFIND", "M-SEARCH", "PURGE"}
    assert total(parsed, "wxgate_http_requests_total", method="OTHER", status="405") == 3
