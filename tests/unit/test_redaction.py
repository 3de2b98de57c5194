"""A Redis password never reaches an error line, even one no URL parser splits right (issue 17:
a password holding `/` or `#` was printed in clear)."""

from __future__ import annotations

import pytest

from smallboat.serve.sessions import RedisSessionStore, SessionStoreError, redact_url

SECRET = "s3cr/et#p?w@x"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@10.0.0.5:6380/2", "redis://:***@10.0.0.5:6380/2"),
        (f"rediss://app:{SECRET}@cache:6379/0", "rediss://app:***@cache:6379/0"),
        ("redis://:pa/ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://u:pa#ss@host:6379", "redis://u:***@host:6379"),
        (
            "unix:///run/redis.sock?db=0&password=pa/ss#x",
            "unix:///run/redis.sock?db=0&password=***",
        ),
        ("cache:6379", "cache:6379"),
        (f"{SECRET}@cache", "***"),
    ],
)
def test_passwords_are_hidden_however_they_break_the_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("password", ["Zq9/Kx7", "Zq9#Kx7", "Wv3/Jy8#Ub2"])
def test_a_url_the_parser_misreads_is_refused_without_the_password(password: str) -> None:
    with pytest.raises(SessionStoreError) as caught:
        RedisSessionStore(f"redis://:{password}@cache:6379/0", ttl_seconds=60, max_events=10)
    message = str(caught.value)
    assert "redis://:***@cache:6379/0" in message
    for piece in password.replace("#", "/").split("/"):
        assert piece not in message
