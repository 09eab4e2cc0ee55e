"""Writable is proven by a write: one probe row into `naming.registry_probe_table()` (created if
missing) in one transaction, through the registry database a region's endpoint names, on either
cloud (Aurora's writer endpoint, a Cloud SQL instance's address)."""
from __future__ import annotations

from mlfleet.dr.engine import RunContext
from mlfleet.dr.target import Target
from mlfleet.stacks.environment import naming


def write_probe(target: Target, ctx: RunContext, region: str, host: str, port: int,
                login: dict[str, str]) -> tuple[bool, str]:
    """(True, where) once the row is committed; (False, why) when the server is read-only (a
    standby or replica) or cannot be reached."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    table = sql.Identifier(naming.registry_probe_table())
    try:
        conninfo = make_conninfo(host=host, port=port, connect_timeout=max(2, int(target.connect_timeout_s)),
                                 application_name="mlfleet-dr", **login)
        with ctx.clock.waiting(), psycopg.connect(conninfo) as connection:
            with connection.transaction():
                connection.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, region text NOT NULL, "
                    "run_id text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())").format(table))
                connection.execute(sql.SQL("INSERT INTO {} (region, run_id) VALUES (%s, %s)").format(table),
                                   (region, ctx.run_id))
    except psycopg.errors.ReadOnlySqlTransaction:
        return False, f"{host}:{port} is read-only (a standby or replica)"
    except psycopg.Error as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return False, f"{host}:{port} is unreachable or refused the probe: {detail}"
    return True, f"wrote a probe row through {host}:{port}"
