"""Which channel a visit came from, as the analytics services name it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pbx_tracker.attribution.channels import channel_of
from pbx_tracker.attribution.visits import Visit

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def visit(**labels: Any) -> Visit:
    labels.setdefault("landing_page", "https://example.ru/windows")
    return Visit("v" * 22, "site", T0, T0, **labels)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (
            {"utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "w", "gclid": "x"},
            ("yandex", "cpc", "w"),
        ),
        ({"utm_source": "newsletter"}, ("newsletter", "(none)", None)),
        ({"gclid": "Cj0KCQ"}, ("google", "cpc", None)),
        ({"yclid": "123", "referrer": "https://yandex.ru/"}, ("yandex", "cpc", None)),
        ({"fbclid": "IwAR"}, ("facebook", "social", None)),
        ({"referrer": "https://www.google.com/"}, ("google", "organic", None)),
        ({"referrer": "https://www.google.co.uk/search?q=x"}, ("google", "organic", None)),
        ({"referrer": "https://ya.ru/"}, ("yandex", "organic", None)),
        ({"referrer": "https://go.mail.ru/search?q=x"}, ("mail.ru", "organic", None)),
        (
            {"referrer": "https://www.forum.example.org/t/1"},
            ("forum.example.org", "referral", None),
        ),
        ({"referrer": "https://example.ru/about"}, ("direct", "(none)", None)),
        ({}, ("direct", "(none)", None)),
        ({"referrer": "not a url"}, ("direct", "(none)", None)),
    ],
)
def test_channel(labels: dict[str, Any], expected: tuple[str, str, str | None]) -> None:
    """A visit's UTM tags, click ids (gclid, yclid, fbclid) or referrer give the source, medium and
    campaign the way Yandex Metrica and Google Analytics name them, with a reason the marketer can
    read."""
    channel = channel_of(visit(**labels))
    assert (channel.source, channel.medium, channel.campaign) == expected
    assert channel.why
