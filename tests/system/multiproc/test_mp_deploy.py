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


def _manifest() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "wxgate.yaml").read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one object of each kind"
    return by_kind


def test_the_k8s_manifest_has_what_a_deployment_needs() -> None:
    k = _manifest()
    assert {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"} <= set(k)
    labels = k["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert k["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k["Service"]["spec"]["selector"].items() <= labels.items()
    assert k["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


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
    k = _manifest()
    env = k["Secret"]["stringData"]
    s = _settings(k["ConfigMap"]["data"]["wxgate.toml"], env, tmp_path)
    pod = k["Deployment"]["spec"]["template"]
    [c] = pod["spec"]["containers"]

    flags = _check_serve_args(c["args"])
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
    assert k["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]

    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/port"] == str(s.server.port)
    assert notes["prometheus.io/path"] == "/metrics"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])

    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    need_s = float(pre_stop[1]) + HTTP_SHUTDOWN_S + s.workers.drain_timeout_s
    assert pod["spec"]["terminationGracePeriodSeconds"] > need_s


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
