"""`wxgate db status|migrate` on a real PostgreSQL, and `wxgate serve` refusing to start on a
store it cannot use: one red line, exit code 2, no traceback and no password."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
from typer.testing import CliRunner

from support.postgres_server import free_port
from wxgate.cli import app
from wxgate.store.postgres.migrate import code_version, migrations


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


def _serve(tmp_path: Path, url: str) -> tuple[int, str, str]:
    """`wxgate serve --sandbox --store url` as a real process (serve installs uvloop's loop
    policy, which must not leak into this test process): (exit code, stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "wxgate", "serve", "--sandbox", "--store", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def _execute(url: str, sql: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def test_db_status_and_migrate(postgres_db: str) -> None:
    code, out, _ = _run("db", "status", "--store", postgres_db)
    assert code == 0
    every = ", ".join(f"{m.version:04d}_{m.name}" for m in migrations())
    assert f"schema version 0 (code {code_version()}); pending: {every}" in out
    code, out, _ = _run("db", "migrate", "--store", postgres_db)
    assert (code, out.strip()) == (0, f"applied: {every}")
    code, out, _ = _run("db", "migrate", "--store", postgres_db)
    assert (code, out.strip()) == (0, "schema is up to date")
    code, out, _ = _run("db", "status", "--store", postgres_db)
    newest = code_version()
    assert (code, out.strip()) == (0, f"schema version {newest} (code {newest}); pending: none")


def test_a_newer_schema_fails_status_and_stops_serve(tmp_path: Path, postgres_db: str) -> None:
    assert _run("db", "migrate", "--store", postgres_db)[0] == 0
    _execute(postgres_db, "INSERT INTO schema_migrations (version, name) VALUES (999, 'next')")
    code, _, err = _run("db", "status", "--store", postgres_db)
    assert code == 1
    assert "newer than this wxgate" in err
    code, _, err = _serve(tmp_path, postgres_db)
    assert code == 2
    assert err.startswith("store unavailable: database schema is version 999")


def test_serve_on_an_unreachable_postgres_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"postgresql://wx:pa55-secret@127.0.0.1:{free_port()}/wxgate"
    code, out, err = _serve(tmp_path, url)
    assert code == 2
    assert err.startswith("store unavailable: postgresql unreachable:"), err
    assert len(err.strip().splitlines()) == 2, err  # the cause, then the fix
    assert "pa55-secret" not in out + err
    code, _, err = _run("db", "status", "--store", url)
    assert code == 2
    assert err.startswith("store unavailable: postgresql unreachable:"), err


def test_db_commands_need_a_postgres_store() -> None:
    code, _, err = _run("db", "status", "--store", "sqlite:///x.db")
    assert code == 2
    assert "not postgresql://" in err
