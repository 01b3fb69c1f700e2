"""`pbx-tracker pool status` as a sysadmin runs it: a subprocess, a config file, a real
database (SQLite and PostgreSQL) with a day of a pool's use."""

from __future__ import annotations

import json
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_runner import Cli
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.attribution.visits import Visit, record_pool_use, save_visit, start_lease

POOL_STATUS = ("pool", "status")


def write_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "config.yaml"
    pools = [
        {"name": "site", "numbers": ["74951110010-74951110013"], "hold_minutes": 20},
        {"name": "promo", "numbers": ["74951110020-74951110024"]},
    ]
    body = {"ami": {"secret": "x"}, "database": {"url": url}, "number_pools": pools}
    config.write_text(json.dumps(body), encoding="utf-8")
    return config


async def test_status_table_json_and_a_pool_too_small(
    engine: AsyncEngine, migrated_url: str, tmp_path: Path
) -> None:
    """pool status shows each pool's last 24 hours, that the fallback was shown, and how many
    numbers to add when the pool is too small; --format json gives the same figures for one pool."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await save_visit(conn, Visit("visit-1", "site", now, now))
        await start_lease(conn, "site", "+74951110010", "visit-1", now)
        await record_pool_use(
            conn, "site", now - timedelta(hours=2), leases_started=60, exhaustions=12, in_use=4
        )
    config = write_config(tmp_path, migrated_url)

    code, out, err = astuple(await Cli(config, POOL_STATUS)())
    assert (code, err) == (0, "")
    assert "Pool site, last 24 h" in out and "Pool promo, last 24 h" in out
    assert "fallback shown (exhausted)" in out
    # 72 new visits in the busiest hour, visits of 0 min + 20 min hold: 72 * 20 / 60 * 1.2
    assert "The pool is smaller than its traffic needs: add 25 numbers." in out

    code, out, err = astuple(await Cli(config, POOL_STATUS)("--pool", "site", "--format", "json"))
    assert (code, err) == (0, "")
    (site,) = json.loads(out)
    assert (site["pool"], site["size"], site["in_use"], site["exhaustions"]) == ("site", 4, 1, 12)
    assert site["recommended_size"] == 29


async def test_unknown_pool_and_unreachable_database_are_one_line_errors(tmp_path: Path) -> None:
    """pool status for an unknown pool exits 1 naming the pools there are, and with an unreachable
    database exits 1 with one line naming it."""
    config = write_config(tmp_path, "postgresql://nobody@127.0.0.1:1/none")
    code, out, err = astuple(await Cli(config, POOL_STATUS)("--pool", "shop"))
    assert (code, out) == (1, "")
    assert err.strip() == "error: unknown pool 'shop' (pools: site, promo)"
    code, out, err = astuple(await Cli(config, POOL_STATUS)())
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("error: database postgresql://nobody@127.0.0.1:1/none")


async def test_a_config_without_pools_says_so(tmp_path: Path) -> None:
    """pool status with no number pools in the config exits 1 saying so and naming number_pools."""
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"ami": {"secret": "x"}, "database": {"url": "sqlite://"}}))
    error = await Cli(config, POOL_STATUS).fails()
    assert error == "error: no number pools in the config (number_pools:)"
