"""Passwords of the web pages' users (sessions and the login brake, kept in the
database: tests/integration/test_web_sessions.py).

Hashes in these tests use a small scrypt cost (n=2**10) to stay fast; the
defaults are checked once.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from pbx_tracker.cli import main
from pbx_tracker.web.auth import MIN_PASSWORD_CHARS, N, hash_password, same_token, verify_password
from pbx_tracker.web.settings import WebSettings, parse_password_hash

CHEAP = {"n": 2**10, "r": 8, "p": 1}


class TestPasswords:
    def test_a_hash_verifies_its_password_only(self) -> None:
        """A user signs in with exactly the password that was hashed; a near miss or an empty
        password is refused."""
        stored = hash_password("correct horse", **CHEAP)
        assert verify_password("correct horse", stored)
        assert not verify_password("correct hors", stored)
        assert not verify_password("", stored)

    def test_the_format_names_scheme_costs_salt_and_hash(self) -> None:
        """A password hash the sysadmin pastes into the config names scrypt, its default costs, a
        salt and the key, so it can be checked later without guessing the settings."""
        scheme, n, r, p, salt, key = hash_password("pw-123456").split("$")
        assert (scheme, int(n), int(r), int(p)) == ("scrypt", N, 8, 1)
        assert len(salt) == 24 and len(key) == 44  # 16 and 32 bytes in base64

    def test_each_hash_has_its_own_salt(self) -> None:
        """Hashing the same password twice gives two different hashes, so equal passwords cannot be
        spotted in the config."""
        assert hash_password("same", **CHEAP) != hash_password("same", **CHEAP)

    @pytest.mark.parametrize(
        "stored",
        [
            "",
            "plain-text-password",
            "bcrypt$10$8$1$c2FsdA==$aGFzaA==",
            "scrypt$1000$8$1$c2FsdA==$aGFzaA==",  # n not a power of two
            "scrypt$2097152$8$1$c2FsdA==$aGFzaA==",  # n above the ceiling
            "scrypt$1024$8$1$not base64!$aGFzaA==",
            "scrypt$1024$8$1$c2FsdA==$",
        ],
    )
    def test_an_unreadable_hash_verifies_nothing(self, stored: str) -> None:
        """A password hash that is empty, plain text, another scheme, out of bounds or broken lets
        nobody in instead of crashing the sign-in."""
        assert not verify_password("anything", stored)

    def test_a_bad_hash_in_the_config_is_named_but_never_shown(self) -> None:
        """A wrong password_hash in the config is reported by its place (users[0].password_hash)
        without ever showing the value, which may be a password typed by mistake."""
        secret_looking = "s3cret-typed-as-hash"
        with pytest.raises(ValidationError) as raised:
            WebSettings.model_validate(
                {
                    "users": [
                        {
                            "name": "anna",
                            "role": "manager",
                            "extension": "101",
                            "password_hash": secret_looking,
                        }
                    ]
                }
            )
        (error,) = raised.value.errors()
        assert error["loc"] == ("users", 0, "password_hash")
        assert secret_looking not in error["msg"]

    def test_a_manager_needs_an_extension_and_names_are_unique(self) -> None:
        """The config refuses a manager user without an extension and a user name listed twice, and
        accepts a hash made with a custom cost."""
        stored = hash_password("pw", **CHEAP)
        with pytest.raises(ValidationError, match="a manager needs the extension"):
            WebSettings.model_validate(
                {"users": [{"name": "anna", "role": "manager", "password_hash": stored}]}
            )
        twice = {"name": "mark", "role": "marketer", "password_hash": stored}
        with pytest.raises(ValidationError, match="listed twice"):
            WebSettings.model_validate({"users": [twice, twice]})
        assert parse_password_hash(stored)[0] == 2**10

    def test_tokens_compare_in_full(self) -> None:
        """A session or form token matches only when it is the same in full; a different or missing
        token is refused."""
        assert same_token("abc", "abc")
        assert not same_token("abd", "abc")
        assert not same_token(None, "abc")


class TestHashPasswordCommand:
    def test_asks_twice_and_prints_a_hash_that_verifies(self) -> None:
        """`pbx-tracker web hash-password` asks for the password twice and prints a scrypt hash that
        verifies it, never echoing the password."""
        result = CliRunner().invoke(main, ["web", "hash-password"], input="long enough\n" * 2)
        assert result.exit_code == 0, result.output
        printed = result.output.strip().splitlines()[-1]
        assert printed.startswith("scrypt$")
        assert verify_password("long enough", printed)
        assert "long enough" not in result.output  # hidden input is not echoed

    def test_refuses_a_short_password(self) -> None:
        """`pbx-tracker web hash-password` refuses a password shorter than the minimum with exit
        code 1 and says how long it must be."""
        short = "x" * (MIN_PASSWORD_CHARS - 1)
        result = CliRunner().invoke(main, ["web", "hash-password"], input=f"{short}\n" * 2)
        assert result.exit_code == 1
        assert "at least" in result.output
