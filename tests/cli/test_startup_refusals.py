"""`wxgate serve` when it cannot or should not start: one paragraph or two lines with the
cause and the fix, exit code 2, no traceback (unless --debug), and nothing left behind."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_run import ONE_APP, closed_port, run


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and "╭" not in text, text


def test_serve_with_no_config_and_no_apps_refuses_and_creates_nothing(tmp_path: Path) -> None:
    ran = run(["serve", "--port", str(closed_port())], tmp_path)
    assert ran.code == 2, ran
    assert "wxgate config init" in ran.err and "wxgate serve --sandbox" in ran.err
    assert "no wxgate.toml" in ran.err
    assert len(ran.err.strip().splitlines()) == 1  # one paragraph, not wrapped into lines
    _no_traceback(ran.err)
    assert list(tmp_path.iterdir()) == []  # no ./wxgate.db


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_port_in_use_is_two_lines_naming_it(tmp_path: Path, taken_port: int) -> None:
    ran = run(["serve", "--port", str(taken_port)], tmp_path, ONE_APP)
    assert ran.code == 2, ran
    assert f"127.0.0.1:{taken_port}" in ran.err and "already in use" in ran.err
    assert "--port" in ran.err
    assert len(ran.err.strip().splitlines()) == 2
    _no_traceback(ran.err)


def test_metrics_port_in_use_names_that_port(tmp_path: Path, taken_port: int) -> None:
    env = {**ONE_APP, "WXGATE_SERVER__METRICS_BIND": f"127.0.0.1:{taken_port}"}
    ran = run(["serve", "--port", str(closed_port())], tmp_path, env)
    assert ran.code == 2, ran
    assert f"127.0.0.1:{taken_port}" in ran.err and "server.metrics_bind" in ran.err
    _no_traceback(ran.err)


def test_debug_shows_the_traceback(tmp_path: Path, taken_port: int) -> None:
    ran = run(["serve", "--port", str(taken_port), "--debug"], tmp_path, ONE_APP)
    assert ran.code != 0
    assert "Traceback" in ran.err or "╭" in ran.err
    assert "address already in use" in ran.err


@pytest.mark.parametrize("processes", ["1", "2"])
def test_unreachable_redis_names_the_host(tmp_path: Path, processes: str) -> None:
    redis_port = closed_port()
    store = f"redis://:hunter2@127.0.0.1:{redis_port}/0"
    args = ["serve", "--port", str(closed_port()), "--store", store, "--processes", processes]
    ran = run(args, tmp_path, ONE_APP)
    assert ran.code == 2, ran
    assert f"cannot reach Redis at 127.0.0.1:{redis_port}" in ran.err
    assert "--store" in ran.err
    assert "hunter2" not in ran.err + ran.out
    assert len(ran.err.strip().splitlines()) == 2
    _no_traceback(ran.err)


def test_sqlite_path_that_cannot_be_made_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a directory")
    db = tmp_path / "afile" / "sub" / "wxgate.db"
    ran = run(
        ["serve", "--port", str(closed_port()), "--store", f"sqlite:///{db}"], tmp_path, ONE_APP
    )
    assert ran.code == 2, ran
    assert f"cannot open the SQLite store {db}" in ran.err
    assert str(tmp_path / "afile") in ran.err and "--store" in ran.err
    assert len(ran.err.strip().splitlines()) == 2
    _no_traceback(ran.err)


def test_a_file_that_is_no_database_is_named(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    db.write_text("this is no SQLite database, just text " * 10)
    ran = run(
        ["serve", "--port", str(closed_port()), "--store", f"sqlite:///{db}"], tmp_path, ONE_APP
    )
    assert ran.code == 2, ran
    assert f"cannot open the SQLite store {db}: file is not a database" in ran.err
    assert "--store" in ran.err
    _no_traceback(ran.err)


def test_a_directory_as_the_store_file_is_named(tmp_path: Path) -> None:
    db = tmp_path / "adir"
    db.mkdir()
    ran = run(
        ["serve", "--port", str(closed_port()), "--store", f"sqlite:///{db}"], tmp_path, ONE_APP
    )
    assert ran.code == 2, ran
    assert f"cannot open the SQLite store {db}: unable to open database file" in ran.err
    _no_traceback(ran.err)


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_bad_ca_file_is_named(tmp_path: Path, content: str | None) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    env = {**ONE_APP, "WXGATE_WECHAT__CA_FILE": str(ca)}
    ran = run(["serve", "--port", str(closed_port())], tmp_path, env)
    assert ran.code == 2, ran
    assert f"cannot load wechat.ca_file {ca}: " in ran.err
    assert ("no such file" if content is None else "not a PEM CA bundle") in ran.err
    assert "SQLite" not in ran.err
    _no_traceback(ran.err)


def test_toml_errors_stay_one_line(tmp_path: Path) -> None:
    (tmp_path / "wxgate.toml").write_text("[server\nport = 1\n")
    ran = run(["serve"], tmp_path)
    assert ran.code == 2, ran
    assert ran.err.startswith("config error:") and "wxgate.toml" in ran.err
    _no_traceback(ran.err)
