"""Settings: one object, read from a mapping, clear one-line errors, secrets hidden."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.errors import SettingsError
from core.settings import Secret, Settings, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.port == 4000
    assert settings.head_url == "http://127.0.0.1:4000"
    assert settings.mongodb_uri is None
    assert settings.redis_url is None
    assert settings.parser_idle_s == 600
    assert settings.embed_precision == "auto"


def test_values_are_read() -> None:
    settings = load_settings(
        {
            "PORT": "4100",
            "MONGODB_URI": "mongodb://h:1/",
            "NEXTAUTH_SECRET": "s3cr3t",
            "REDIS_URL": "redis://r:6379/0",
            "WEB_APP_URL": "https://app.example/",
            "INDEXER_PARSER_IDLE_S": "0",
            "INDEXER_EMBED_PRECISION": "bfloat16",
        }
    )
    assert settings.embed_precision == "bfloat16"
    assert settings.port == 4100
    assert settings.parser_idle_s == 0
    assert settings.head_url == "http://127.0.0.1:4100"
    assert settings.web_app_url == "https://app.example"
    assert settings.nextauth_secret == Secret("s3cr3t")


def test_an_empty_environment_gives_the_declared_defaults() -> None:
    assert load_settings({}) == Settings()


def test_head_url_follows_the_port_unless_set() -> None:
    assert Settings(port=4100).head_url == "http://127.0.0.1:4100"
    assert Settings(port=4100, head_url="http://h:1").head_url == "http://h:1"
    assert load_settings({"PORT": "4100", "HEAD_URL": "http://h:1/"}).head_url == "http://h:1"


def test_blank_values_leave_the_default() -> None:
    settings = load_settings({"RAY_JOBS_ADDRESS": "  ", "PORT": " ", "INDEXER_WARM": ""})
    assert settings.ray_jobs_address is None
    assert settings.port == 4000
    assert settings.warm is True


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"PORT": "abc"}, "PORT"),
        ({"PORT": "0"}, "PORT"),
        ({"WEB_APP_URL": "ftp://x"}, "WEB_APP_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"MONGODB_URI": "postgres://x"}, "MONGODB_URI"),
        ({"INDEXER_PARSER_IDLE_S": "-1"}, "INDEXER_PARSER_IDLE_S"),
        ({"INDEXER_EMBED_PRECISION": "float16"}, "INDEXER_EMBED_PRECISION"),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(environ)


def test_secrets_never_print() -> None:
    settings = load_settings({"NEXTAUTH_SECRET": "topsecret", "MONGODB_URI": "mongodb://u:pw@h/"})
    assert "topsecret" not in repr(settings)
    assert "pw@h" not in repr(settings)
    assert "topsecret" not in str(settings.nextauth_secret)


def test_publish_token_is_derived_not_the_secret() -> None:
    settings = load_settings({"NEXTAUTH_SECRET": "topsecret"})
    token = settings.effective_publish_token().reveal()
    assert token != "topsecret"
    assert len(token) == 64
    assert load_settings({"NEXTAUTH_SECRET": "other"}).effective_publish_token().reveal() != token


def test_missing_secret_is_one_line_cli_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "head", "--port", "1"],
        env={"MONGODB_URI": "mongodb://127.0.0.1:1/", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "indexer: NEXTAUTH_SECRET is required (the NextAuth secret of the web app)"
    ]
