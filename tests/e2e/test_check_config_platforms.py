"""`pbx-tracker check-config --live` with Bitrix24, amoCRM and Telegram switched on, as a
sysadmin runs it: against the fake Asterisk and the platforms' loopback stand-ins, an OK
line per platform whose webhook or token works, else one line naming the key to fix."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ami_settings import shipped_write_classes
from amocrm_server import AmoCrmStandIn, Scripted
from bitrix24_server import Bitrix24Portal, serving
from cli_runner import Cli
from telegram_server import BOT_USERNAME, BotApi, telegram_server
from test_check_config_live import SECRET, cli

from pbx_tracker.sim.asterisk import FakeAsterisk

pytestmark = pytest.mark.slow

AMOCRM_TOKEN = "amo-long-lived-token-check-0123456789"
BOT_TOKEN = "7000000001:AAHcheckConfigBotToken0123456789"
OK_LINES = [
    "Bitrix24 OK: webhook of user 1 with scopes crm, telephony",
    "amoCRM OK: account Example (id 28805383)",
    f"Telegram OK: bot @{BOT_USERNAME}",
]


@dataclass
class Platforms:
    """The three stand-ins the config points at."""

    bitrix24: Bitrix24Portal
    amocrm: AmoCrmStandIn
    telegram: BotApi


@pytest.fixture(name="fake")
async def _fake() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(secret=SECRET) as server:
        server.setup.write_classes = shipped_write_classes()
        yield server


@pytest.fixture(name="platforms")
async def _platforms() -> AsyncIterator[Platforms]:
    async with (
        serving() as portal,
        AmoCrmStandIn(AMOCRM_TOKEN) as amocrm,
        telegram_server(BOT_TOKEN) as bot,
    ):
        yield Platforms(portal, amocrm, bot)


def with_platforms(
    tmp_path: Path, port: int, urls: dict[str, str], *, bot_token: str = BOT_TOKEN
) -> Cli:
    """`cli`'s config with Bitrix24, amoCRM and Telegram on (``urls``: their addresses),
    Anna and Boris known in each, Vera (103) in none; the secrets in files."""
    checker = cli(tmp_path, port)
    raw: dict[str, Any] = yaml.safe_load(checker.config.read_text(encoding="utf-8"))
    for number, manager in enumerate(raw["managers"][:2], start=1):
        manager.update(bitrix24_user=number, amocrm_user=9000 + number, telegram_chat=500 + number)
    raw["crm"] = {
        "bitrix24": {"webhook_url_file": secret_file(tmp_path, "bitrix24", urls["bitrix24"])},
        "amocrm": {
            "base_url": urls["amocrm"],
            "token_file": secret_file(tmp_path, "amocrm", AMOCRM_TOKEN),
        },
    }
    raw["callbacks"]["telegram"] = {
        "token_file": secret_file(tmp_path, "telegram", bot_token),
        "api_url": urls["telegram"],
        "timeout": 1,
    }
    checker.config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return checker


def urls_of(platforms: Platforms) -> dict[str, str]:
    return {
        "bitrix24": platforms.bitrix24.webhook_url,
        "amocrm": platforms.amocrm.base_url,
        "telegram": platforms.telegram.url,
    }


def secret_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.secret"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def secrets_shown(output: str) -> list[str]:
    """The secrets of these tests that ``output`` shows."""
    return [s for s in (AMOCRM_TOKEN, BOT_TOKEN, "w3bh00kc0de42xyz") if s in output]


async def test_working_platforms_each_say_ok(
    fake: FakeAsterisk, platforms: Platforms, tmp_path: Path
) -> None:
    """With the webhook, token and bot right, `--live` exits 0 with an OK line for each
    platform, and notes Vera (103) as known in none of them."""
    out = await with_platforms(tmp_path, fake.port, urls_of(platforms)).ok("--live")
    lines = out.splitlines()
    assert f"Asterisk OK: 127.0.0.1:{fake.port} as tracker" in lines
    assert lines[-3:] == OK_LINES
    notes = [line for line in lines if line.startswith("note: ") and "managers without" in line]
    assert notes == [
        "note: crm.bitrix24: managers without bitrix24_user: 103 (their calls are registered "
        "under the first ringing manager who has one)",
        "note: crm.amocrm: managers without amocrm_user: 103 (the calls they answer are added "
        "with no responsible user of theirs)",
        "note: callbacks.telegram: managers without telegram_chat: 103 (they get no reminders "
        f"in Telegram; each sends /start to @{BOT_USERNAME} for the chat id)",
    ]
    assert platforms.bitrix24.methods() == ["scope"]
    assert len(platforms.amocrm.served("GET", "/api/v4/account")) == 1
    assert platforms.telegram.calls == ["getMe"]
    assert secrets_shown(out) == []


async def test_a_webhook_without_the_telephony_scope_names_the_scope_to_tick(
    fake: FakeAsterisk, platforms: Platforms, tmp_path: Path
) -> None:
    """A Bitrix24 webhook made without the telephony scope is one line naming the
    webhook's key and the scope to tick; the other platforms still say OK."""
    platforms.bitrix24.scopes = ["crm", "user"]
    run = await with_platforms(tmp_path, fake.port, urls_of(platforms))("--live")
    assert run.code == 1, run
    assert run.error_line == (
        "crm.bitrix24.webhook_url_file: the webhook lacks the telephony scope; tick telephony "
        "among the inbound webhook's access permissions in Bitrix24 and save it"
    )
    assert OK_LINES[1] in run.out and OK_LINES[2] in run.out
    assert "Bitrix24 OK" not in run.out
    assert secrets_shown(run.out + run.err) == []


async def test_no_manager_known_in_bitrix24_is_a_problem(
    fake: FakeAsterisk, platforms: Platforms, tmp_path: Path
) -> None:
    """With Bitrix24 on and no manager's bitrix24_user set, `--live` says no call can be
    registered there, though the webhook itself is OK."""
    checker = with_platforms(tmp_path, fake.port, urls_of(platforms))
    raw = yaml.safe_load(checker.config.read_text(encoding="utf-8"))
    for manager in raw["managers"]:
        manager.pop("bitrix24_user", None)
    checker.config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    run = await checker("--live")
    assert run.code == 1, run
    assert run.error_line.startswith(
        "managers: no manager has a bitrix24_user: Bitrix24 cannot register any call; "
    )
    assert run.out.splitlines()[-3:] == OK_LINES


async def test_a_revoked_amocrm_token_names_its_file_and_never_shows_it(
    fake: FakeAsterisk, platforms: Platforms, tmp_path: Path
) -> None:
    """A revoked amoCRM token is one line naming crm.amocrm.token_file and what to do; the
    token shows nowhere."""
    platforms.amocrm.revoke()
    run = await with_platforms(tmp_path, fake.port, urls_of(platforms))("--live")
    assert run.code == 1, run
    assert run.error_line.startswith(
        "crm.amocrm.token_file: amoCRM refused the token (amoCRM api/v4/account: HTTP 401 "
    )
    assert "revoked or has expired; make a new long-lived token" in run.error_line
    assert "amoCRM OK" not in run.out
    assert secrets_shown(run.out + run.err) == []


async def test_a_wrong_bot_token_names_its_file(
    fake: FakeAsterisk, platforms: Platforms, tmp_path: Path
) -> None:
    """A token Telegram knows no bot by is one line naming callbacks.telegram.token_file;
    neither token shows."""
    wrong = "7000000001:AAHsomeOtherBotsToken9876543210"
    checker = with_platforms(tmp_path, fake.port, urls_of(platforms), bot_token=wrong)
    run = await checker("--live")
    assert run.code == 1, run
    assert run.error_line.startswith(
        "callbacks.telegram.token_file: Telegram knows no bot with this token "
        "(telegram getMe: 401 Unauthorized); put the token @BotFather gave"
    )
    assert wrong not in run.out + run.err
    assert secrets_shown(run.out + run.err) == []


async def test_platforms_that_cannot_be_reached_say_so(fake: FakeAsterisk, tmp_path: Path) -> None:
    """Platforms that do not listen are each one line naming the address's key and saying
    it cannot be reached, in bounded time."""
    async with serving() as portal, AmoCrmStandIn(AMOCRM_TOKEN) as amocrm:
        urls = {"bitrix24": portal.webhook_url, "amocrm": amocrm.base_url}
    async with telegram_server(BOT_TOKEN) as bot:
        urls["telegram"] = bot.url
    run = await with_platforms(tmp_path, fake.port, urls)("--live")
    assert run.code == 1, run
    problems = run.err.splitlines()
    bitrix24_host = urls["bitrix24"].split("/")[2]
    assert [line.split(" (")[0] for line in problems] == [
        f"crm.bitrix24.webhook_url_file: cannot reach Bitrix24 at {bitrix24_host}",
        f"crm.amocrm.base_url: cannot reach amoCRM at {urls['amocrm']}/",
        f"callbacks.telegram.api_url: cannot reach the Bot API at {urls['telegram']}",
    ]
    assert "(bitrix24 scope: connection refused)" in problems[0]
    assert "(telegram getMe: connection refused)" in problems[2]
    assert secrets_shown(run.out + run.err) == []


async def test_platforms_answering_garbage_are_problems_not_crashes(
    fake: FakeAsterisk, platforms: Platforms, tmp_path: Path
) -> None:
    """A webhook answering a scope list of the wrong shape and an account without its name
    are each one line naming the address's key, with no traceback."""
    platforms.bitrix24.script.append((200, '{"result": "crm,telephony", "time": {}}'))
    platforms.amocrm.scripted.append(Scripted(200, '{"id": 7, "subdomain": "example"}'))
    run = await with_platforms(tmp_path, fake.port, urls_of(platforms))("--live")
    assert run.code == 1, run
    assert "Traceback" not in run.err
    host = platforms.bitrix24.webhook_url.split("/")[2]
    assert run.err.splitlines() == [
        f"crm.bitrix24.webhook_url_file: Bitrix24 at {host} did not answer as a webhook does "
        "(bitrix24 scope: answered no list of scopes); is the file's URL the inbound "
        "webhook's (https://<portal>/rest/<user>/<code>/)?",
        f"crm.amocrm.base_url: amoCRM at {platforms.amocrm.base_url}/ did not open the account "
        "(amoCRM answered an account without its name or subdomain); is it the account's "
        "address (https://<subdomain>.amocrm.ru), paid for and not blocked?",
    ]
    assert OK_LINES[2] in run.out


async def test_a_bot_api_that_never_answers_is_given_up_after_its_timeout(
    fake: FakeAsterisk, platforms: Platforms, tmp_path: Path
) -> None:
    """An address that takes the connection and never answers is a problem after the
    platform's timeout (1 s here), not a hang."""
    async with silent_server() as url:
        urls = {**urls_of(platforms), "telegram": url}
        run = await with_platforms(tmp_path, fake.port, urls)("--live")
    assert run.code == 1, run
    assert run.error_line == (
        f"callbacks.telegram.api_url: cannot reach the Bot API at {url} (telegram getMe: no "
        "answer within 1 s); is it reachable from this server (a proxy or firewall in the way)?"
    )


async def test_platforms_are_checked_even_when_asterisk_is_down(
    platforms: Platforms, tmp_path: Path
) -> None:
    """With Asterisk down, `--live` still checks the platforms: the AMI problem and each
    platform's OK line are all printed."""
    async with FakeAsterisk() as gone:
        port = gone.port
    run = await with_platforms(tmp_path, port, urls_of(platforms))("--live")
    assert run.code == 1, run
    assert run.error_line.startswith("ami.host: cannot log in to Asterisk's manager interface")
    for line in OK_LINES:
        assert line in run.out.splitlines()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """An address on 127.0.0.1 that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
