"""A PostgreSQL primary and a synchronous streaming standby of our own, on free loopback
ports, for the failover test: initdb for the primary, `pg_basebackup -R` for the standby,
`synchronous_commit = on` with the standby named in `synchronous_standby_names`, so a COMMIT
returns only once the standby has the WAL on disk: what the primary answered is on both.

`kill_primary()` SIGKILLs the primary's postmaster and backends (the machine is gone);
`promote()` is `pg_ctl promote` on the standby. Both servers and their directories are
removed on exit, whatever the test did. fsync is off on both (see PostgresServer).
"""

from __future__ import annotations

import time

import asyncpg

from support.postgres_server import LOCAL_HOST, PostgresServer, _sync

STANDBY_NAME = "standby1"
DATABASE = "wxgate"


class PgCluster:
    """Primary + synchronous standby; `url()` is the multi-host, read-write URL."""

    def __init__(self) -> None:
        self.primary = PostgresServer(
            settings={
                "wal_level": "replica",
                "max_wal_senders": "4",
                "synchronous_commit": "on",
                "synchronous_standby_names": STANDBY_NAME,
                "wal_keep_size": "64MB",
            }
        )
        self.standby = PostgresServer()

    def __enter__(self) -> PgCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self, timeout_s: float = 60.0) -> None:
        self.primary.start()
        self.standby.run(
            "pg_basebackup", "-h", LOCAL_HOST, "-p", str(self.primary.port), "-U", "postgres",
            "-D", str(self.standby.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        # -R wrote primary_conninfo; ours (later in the file, so it wins) names the standby,
        # which is how synchronous_standby_names recognises it.
        self.standby.configure(
            {
                "primary_conninfo": f"host={LOCAL_HOST} port={self.primary.port} "
                f"user=postgres application_name={STANDBY_NAME}",
                "hot_standby": "on",
                # pg_basebackup copied the primary's synchronous_standby_names; kept, the
                # promoted standby (with no standby of its own) would hold every COMMIT forever.
                "synchronous_standby_names": "",
            }
        )
        self.standby.start()
        deadline = time.monotonic() + timeout_s
        while self.sync_state() != "sync":
            if time.monotonic() > deadline:
                raise RuntimeError(f"standby never in sync: {self.standby.log()}")
            time.sleep(0.05)
        # Only now: until the standby is there, every COMMIT on the primary waits for it.
        _sync(lambda: _execute(self.primary.port, f"CREATE DATABASE {DATABASE}"))

    def sync_state(self) -> str | None:
        """The standby's sync_state as the primary sees it ("sync" once commits wait for it)."""

        async def read() -> str | None:
            conn = await asyncpg.connect(
                host=LOCAL_HOST, port=self.primary.port, user="postgres", timeout=5
            )
            try:
                state: str | None = await conn.fetchval(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
                    STANDBY_NAME,
                )
                return state
            finally:
                await conn.close()

        return _sync(read)

    def url(self) -> str:
        """Both hosts, the primary first; libpq (and asyncpg) skip the one that is not
        read-write, so after a promotion the gateway lands on the new primary."""
        hosts = f"{LOCAL_HOST}:{self.primary.port},{LOCAL_HOST}:{self.standby.port}"
        return (
            f"postgresql://postgres@{hosts}/{DATABASE}"
            "?target_session_attrs=read-write&connect_timeout=2"
        )

    def kill_primary(self) -> None:
        self.primary.kill9()

    def promote(self, timeout_s: float = 60.0) -> None:
        """pg_ctl promote on the standby, waiting until it accepts writes."""
        self.standby.run(
            "pg_ctl", "-D", str(self.standby.data), "-w", "-t", str(int(timeout_s)), "promote"
        )

    def close(self) -> None:
        errors: list[BaseException] = []
        for server in (self.primary, self.standby):
            try:
                server.close()
            except Exception as exc:  # the other one is still removed
                errors.append(exc)
        if errors:
            raise errors[0]


async def _execute(port: int, sql: str) -> None:
    conn = await asyncpg.connect(host=LOCAL_HOST, port=port, user="postgres", timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def is_primary(port: int) -> bool:
    """Whether the server on `port` answers and takes writes (not in recovery)."""

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(host=LOCAL_HOST, port=port, user="postgres", timeout=2)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        try:
            return not await conn.fetchval("SELECT pg_is_in_recovery()")
        finally:
            await conn.close()

    return _sync(probe)
