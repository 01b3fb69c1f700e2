"""Secrets that are no secrets: the example config's placeholders, well-known defaults,
and values too short to be secrets.

`pbx-tracker check-config` and `pbx-tracker run` refuse them, one line each naming the
key (never the value) and the fix.  The reasons: a copied example (``CHANGE_ME`` in
``pbx-tracker.yaml`` and in Asterisk's ``manager.conf``) is a working login for anyone
who read the example; the example's web users' hashes are public; and a secret of a
few characters is guessed, and cannot be masked in logs without telling it (masking
``x`` in every line shows where the ``x`` is).

Every secret the settings hold is looked at: each `SecretStr` field (the AMI secret,
SMTP password, webhook and CRM secrets, the GA4 API secret, the status token), the
password inside a database URL, and each web user's password hash.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr

from pbx_tracker.config.models import Settings

__all__ = ["MIN_SECRET_CHARS", "PLACEHOLDER_HASHES", "weak_secret_problems"]

MIN_SECRET_CHARS = 8  # NIST SP 800-63B's floor for a memorised secret
# Lower-case; compared with the secret lower-cased.  "amp111": FreePBX's AMI default.
PLACEHOLDERS = frozenset(
    {
        "change_me",
        "changeme",
        "change-me",
        "change me",
        "changethis",
        "replace_me",
        "replaceme",
        "your_secret",
        "yoursecret",
        "secret",
        "password",
        "passw0rd",
        "password1",
        "admin",
        "administrator",
        "asterisk",
        "amp111",
        "example",
        "default",
        "12345678",
        "123456789",
        "1234567890",
        "qwertyui",
        "qwerty123",
    }
)
# The password hashes of config/pbx-tracker.example.yaml (of passwords nobody knows, but
# published): a config that still carries them was copied, not written.
PLACEHOLDER_HASHES = frozenset(
    {
        "scrypt$32768$8$1$d5/4bX/HKvMkanDUubw0eg==$5XFIpTCBGq1yt/xULE0yYsj53Q98O+Zdghy6QThKn+g=",
        "scrypt$32768$8$1$X+C6wClWAbr94+RDoaKNuQ==$tnD9tqjwDtgtImRC5ZrWLdhyOdmvreVJbFsEMCNIvlk=",
    }
)
_FIX = "use a long random value (e.g. `openssl rand -hex 16`)"
_AMI_FIX = f"{_FIX}, the same as the user's secret in Asterisk's manager.conf"


def weak_secret_problems(settings: Settings) -> list[str]:
    """One ``key: problem; fix`` line per weak secret; empty when all are fine."""
    problems = []
    for key, value in _secrets(settings):
        reason = _weakness(value)
        if reason:
            fix = _AMI_FIX if key == "ami.secret" else _FIX
            problems.append(f"{key}: {reason}; {fix}")
    for index, user in enumerate(settings.web.users):
        if user.password_hash in PLACEHOLDER_HASHES:
            problems.append(
                f"web.users[{index}].password_hash: the example config's placeholder; "
                f"run `pbx-tracker web hash-password` and put its output here"
            )
    return problems


def _weakness(value: str) -> str | None:
    if not value:
        return None  # unset: the sections that need it say so themselves
    if value.strip().lower() in PLACEHOLDERS:
        return "a placeholder or well-known default, not a secret"
    if len(value) < MIN_SECRET_CHARS:
        return f"too short to be a secret (at least {MIN_SECRET_CHARS} characters)"
    if len(set(value)) == 1:
        return "one character repeated, not a secret"
    return None


def _secrets(settings: Settings) -> Iterator[tuple[str, str]]:
    """(key path, value) of every secret in the settings."""
    for password in _url_passwords(settings.database.url):
        yield "database.url", password
    yield from _model_secrets(settings, "")


def _model_secrets(value: object, key: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, SecretStr):
        text = value.get_secret_value()
        if "://" in text:  # a URL held as a secret: its password is the secret
            for password in _url_passwords(text):
                yield key, password
        else:
            yield key, text
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _model_secrets(getattr(value, name), f"{key}.{name}".lstrip("."))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _model_secrets(item, f"{key}[{index}]")


def _url_passwords(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [unquote(password)] if password else []
