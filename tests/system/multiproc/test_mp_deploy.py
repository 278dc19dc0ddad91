"""deploy/ holds together: the Kubernetes manifest and the systemd unit parse, their config and
secrets load into valid settings, their command lines use real `wxgate serve` options, and
their timeouts leave room for a drain. (No cluster here: these are structural checks.)"""

from __future__ import annotations

import configparser
import shlex
import tomllib
from pathlib import Path
from typing import Any

import typer.main
import yaml

from wxgate.cli import app as cli_app
from wxgate.runtime import HTTP_SHUTDOWN_S, parse_role
from wxgate.settings import Settings, load
from wxgate.supervisor import KILL_GRACE_S

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def _serve_options() -> set[str]:
    serve = typer.main.get_command(cli_app).commands["serve"]  # type: ignore[attr-defined]
    return {opt for p in serve.params for opt in p.opts}


def _check_serve_args(args: list[str]) -> dict[str, str]:
    """`serve --flag value ...`: every flag is a real option; returns flag -> value."""
    assert args[0] == "serve", args
    known = _serve_options()
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert set(flags) <= known, set(flags) - known
    if "--role" in flags:
        parse_role(flags["--role"])
    return flags


def _settings(toml_text: str, env: dict[str, str], tmp_path: Path) -> Settings:
    path = tmp_path / "wxgate.toml"
    path.write_text(toml_text)
    return load(path, env)


# ---------------------------------------------------------------- Kubernetes


def _docs(*names: str) -> list[dict[str, Any]]:
    return [
        d for name in names for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d
    ]


def _manifest(*layout: str) -> dict[str, dict[str, Any]]:
    """config.yaml plus the one-role layout (or the files named), one object of each kind."""
    docs = _docs("config.yaml", *(layout or ("wxgate.yaml",)))
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one object of each kind"
    return by_kind


def test_the_k8s_manifest_has_what_a_deployment_needs() -> None:
    for layout in (("wxgate.yaml",), ("roles/api.yaml",), ("roles/worker.yaml",)):
        k = _manifest(*layout)
        assert {"ConfigMap", "Secret", "Deployment", "PodDisruptionBudget"} <= set(k)
        assert k["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert {"cpu", "memory"} <= set(
            k["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        )


def test_the_k8s_config_and_secret_make_valid_settings(tmp_path: Path) -> None:
    k = _manifest()
    env = k["Secret"]["stringData"]
    assert all(key.startswith("WXGATE_") for key in env)
    s = _settings(k["ConfigMap"]["data"]["wxgate.toml"], env, tmp_path)
    assert s.server.host == "0.0.0.0"
    assert s.store.url == env["WXGATE_STORE__URL"] and s.store.url.startswith("redis://")
    assert s.server.api_keys and all(key for key in s.server.api_keys)
    for app in s.apps:  # every app's secret comes from the Secret, none from the file
        assert env[f"WXGATE_APPS__{app.name}__SECRET"] == app.secret
    in_file = tomllib.loads(k["ConfigMap"]["data"]["wxgate.toml"])
    assert all("secret" not in app for app in in_file["apps"]), "no secret in the ConfigMap"


def test_the_k8s_pod_probes_scrapes_and_drains(tmp_path: Path) -> None:
    for layout in (("wxgate.yaml",), ("roles/api.yaml",), ("roles/worker.yaml",)):
        _check_pod(_manifest(*layout), tmp_path)


def _check_pod(k: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """The Deployment in `k` mounts the config, probes /healthz and /readyz, is scraped, and
    gives SIGTERM's drain its time; one with a Service leaves it (preStop) before."""
    env = k["Secret"]["stringData"]
    s = _settings(k["ConfigMap"]["data"]["wxgate.toml"], env, tmp_path)
    pod = k["Deployment"]["spec"]["template"]
    [c] = pod["spec"]["containers"]

    flags = _check_serve_args(c["args"])
    labels = pod["metadata"]["labels"]
    assert k["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [mount] = [m for m in c["volumeMounts"] if m["name"] == "config"]
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == k["ConfigMap"]["metadata"]["name"]
    assert flags["--config"] == f"{mount['mountPath']}/wxgate.toml"
    assert c["envFrom"] == [{"secretRef": {"name": k["Secret"]["metadata"]["name"]}}]

    [port] = c["ports"]
    assert port["containerPort"] == s.server.port
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"

    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/port"] == str(s.server.port)
    assert notes["prometheus.io/path"] == "/metrics"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])

    need_s = HTTP_SHUTDOWN_S + s.workers.drain_timeout_s
    if flags.get("--role") == "worker":  # serves no API: no Service, nothing to leave
        assert "Service" not in k and "lifecycle" not in c
    else:
        assert k["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
        assert k["Service"]["spec"]["selector"].items() <= labels.items()
        pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        need_s += float(pre_stop[1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > need_s


def test_the_split_layout_runs_one_role_per_deployment_and_scales_each() -> None:
    api, worker = _manifest("roles/api.yaml"), _manifest("roles/worker.yaml")
    roles = {}
    for k in (api, worker):
        [c] = k["Deployment"]["spec"]["template"]["spec"]["containers"]
        roles[_check_serve_args(c["args"])["--role"]] = k["Deployment"]
    assert set(roles) == {"api", "worker"}
    # The two Deployments' selectors must not claim each other's pods.
    api_sel = roles["api"]["spec"]["selector"]["matchLabels"]
    worker_pod = roles["worker"]["spec"]["template"]["metadata"]["labels"]
    assert not api_sel.items() <= worker_pod.items()

    # The API's HPA targets it, on the metric the adapter serves per pod.
    adapter = _docs("scale/prometheus-adapter.yaml")[0]["data"]["config.yaml"]
    rules = yaml.safe_load(adapter)
    served = {r["name"]["as"] for r in rules["rules"]}
    external = {r["name"]["as"] for r in rules["externalRules"]}
    hpa = api["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == roles["api"]["metadata"]["name"]
    assert {m["pods"]["metric"]["name"] for m in hpa["metrics"]} <= served

    # The worker's two autoscalers (KEDA or a plain HPA) target it, on the same backlog.
    [scaled] = _docs("scale/keda.yaml")
    [plain] = _docs("scale/hpa-worker.yaml")
    assert scaled["spec"]["scaleTargetRef"]["name"] == roles["worker"]["metadata"]["name"]
    assert plain["spec"]["scaleTargetRef"]["name"] == roles["worker"]["metadata"]["name"]
    assert {m["external"]["metric"]["name"] for m in plain["spec"]["metrics"]} <= external
    assert scaled["spec"]["minReplicaCount"] >= 1, "scheduled sends and retries need a worker"
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert 'wxgate_queue_messages{status="queued"}' in trigger["metadata"]["query"]
    threshold = float(trigger["metadata"]["threshold"])
    assert threshold == float(plain["spec"]["metrics"][0]["external"]["target"]["averageValue"])
    # Worker PDB: an eviction takes one at a time, so a single worker can still be drained.
    assert worker["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


# ---------------------------------------------------------------- systemd


def _env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd reads them: comments skipped, outer quotes removed."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / "wxgate.service").read_text())
    return unit


def test_the_systemd_unit_runs_the_supervisor_and_waits_for_its_drain(tmp_path: Path) -> None:
    service = _unit()["Service"]
    env = _env_file(DEPLOY / "systemd" / "wxgate.env")
    s = _settings((DEPLOY / "systemd" / "wxgate.toml").read_text(), env, tmp_path)

    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/wxgate")
    flags = _check_serve_args(argv[1:])
    assert int(flags["--processes"]) > 1
    assert flags["--config"] == "/etc/wxgate/wxgate.toml"
    assert service["EnvironmentFile"] == "/etc/wxgate/wxgate.env"
    # SIGTERM to the supervisor only, which forwards one to each child and waits for them.
    assert service["KillMode"] == "mixed"
    timeout_s = float(service["TimeoutStopSec"])
    assert timeout_s > s.workers.drain_timeout_s + KILL_GRACE_S
    assert service["Restart"] == "on-failure"


def test_the_systemd_env_file_makes_valid_settings(tmp_path: Path) -> None:
    env = _env_file(DEPLOY / "systemd" / "wxgate.env")
    s = _settings((DEPLOY / "systemd" / "wxgate.toml").read_text(), env, tmp_path)
    assert s.store.url == env["WXGATE_STORE__URL"] and s.store.url.startswith("redis://")
    assert s.server.api_keys == ["change-me-api-key"]
    assert [a.secret for a in s.apps] == ["change-me-appsecret"]
    assert "change-me" not in repr(s), "secrets stay masked"


def test_a_numeric_secret_in_the_environment_stays_text(tmp_path: Path) -> None:
    env = {
        "WXGATE_APPS__shop__SECRET": "0123456789",
        "WXGATE_APPS__shop__CALLBACK_TOKEN": "1e5",
        "WXGATE_APPS__shop__RATE_PER_S": "20",
    }
    s = _settings((DEPLOY / "systemd" / "wxgate.toml").read_text(), env, tmp_path)
    [app] = s.apps
    assert (app.secret, app.callback_token, app.rate_per_s) == ("0123456789", "1e5", 20.0)


def test_the_image_runs_wxgate_on_the_configured_port() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["wxgate"]' in text
    assert "EXPOSE 8080" in text
    assert "USER 10001" in text
    [c] = _manifest()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert (
        _manifest()["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
        == 10001
    )
    assert c["ports"][0]["containerPort"] == 8080
