"""Settings from environment variables: defaults, parsing, and start-up errors that name the variable."""

from __future__ import annotations

import pytest
from pydantic import AliasChoices

from jollyjet.settings import EMBEDDED_MONGODB_URI, Environment, Settings, SettingsError, load_settings

_PRODUCTION = {
    "JOLLYJET_ENV": "production",
    "MONGODB_URI": "mongodb://db.internal:27017/jollyjet",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "JOLLYJET_API_TOKENS": "a-production-token-0001",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the machine running the tests."""
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        for variable in alias.choices if isinstance(alias, AliasChoices) else [name]:
            monkeypatch.delenv(str(variable), raising=False)


def _setenv(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_defaults_are_the_embedded_development_setup() -> None:
    settings = load_settings()
    assert settings.env is Environment.DEVELOPMENT
    assert settings.mongodb_uri == EMBEDDED_MONGODB_URI and settings.embedded_mongo
    assert settings.redis_url is None and settings.embedded_redis
    assert settings.cache_enabled and settings.api_tokens == ()
    assert (settings.max_page, settings.max_page_size, settings.max_body_bytes) == (10000, 100, 64 * 1024)


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(
        monkeypatch,
        {
            "JOLLYJET_MAX_PAGE_SIZE": "50",
            "JOLLYJET_MAX_PAGE": "7",
            "JOLLYJET_MAX_BODY_BYTES": "2048",
            "JOLLYJET_CACHE_ENABLED": "false",
            "JOLLYJET_CACHE_PRODUCT_TTL_S": "60",
            "REDIS_URL": "redis://localhost:6379/2",
            "JOLLYJET_API_TOKENS": " first , second ,,",
        },
    )
    settings = load_settings()
    assert (settings.max_page_size, settings.max_page, settings.max_body_bytes) == (50, 7, 2048)
    assert settings.cache_enabled is False and settings.cache_product_ttl_s == 60
    assert settings.redis_url == "redis://localhost:6379/2"
    assert settings.api_tokens == ("first", "second")


def test_explicit_values_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOLLYJET_MAX_PAGE", "7")
    assert load_settings(max_page=9).max_page == 9


def test_an_empty_redis_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "")
    assert load_settings().redis_url is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_URL", "http://x"),
        ("REDIS_URL", "localhost:6379"),
        ("MONGODB_URI", "postgres://db/x"),
        ("MONGODB_URI", "localhost:27017"),
        ("JOLLYJET_ENV", "prod"),
        ("JOLLYJET_ENV", "Production"),
        ("JOLLYJET_CACHE_PRODUCT_TTL_S", "abc"),
        ("JOLLYJET_CACHE_PRODUCT_TTL_S", "0"),
        ("JOLLYJET_CACHE_PRODUCT_TTL_S", "1.5"),
        ("JOLLYJET_CACHE_LIST_TTL_S", "-1"),
        ("JOLLYJET_CACHE_ENABLED", "maybe"),
        ("JOLLYJET_CACHE_KEY_PREFIX", "has space"),
        ("JOLLYJET_CACHE_KEY_PREFIX", "a:b"),
        ("JOLLYJET_MAX_PAGE_SIZE", "0"),
        ("JOLLYJET_MAX_PAGE_SIZE", "100000"),
        ("JOLLYJET_MAX_PAGE", "0"),
        ("JOLLYJET_MAX_BODY_BYTES", "10"),
        ("JOLLYJET_MONGODB_TIMEOUT_MS", "1"),
        ("JOLLYJET_REDIS_TIMEOUT_MS", "0"),
        ("REDIS_URL", "redis+mesh://n:6379"),
        ("JOLLYJET_JOBS_OFF", "backup"),
        ("JOLLYJET_AUDIT_INTERVAL_S", "0"),
        ("JOLLYJET_LOG_LEVEL", "TRACE"),
        ("JOLLYJET_BREAKER_COOLDOWN_S", "0"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, {"REDIS_URL": "http://x", "JOLLYJET_MAX_PAGE": "abc"})
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "REDIS_URL" in str(raised.value) and "JOLLYJET_MAX_PAGE" in str(raised.value)


def test_a_complete_production_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, _PRODUCTION)
    settings = load_settings()
    assert settings.env is Environment.PRODUCTION and not settings.embedded_mongo and not settings.embedded_redis


def test_production_may_run_without_a_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, {**_PRODUCTION, "JOLLYJET_CACHE_ENABLED": "false"})
    monkeypatch.delenv("REDIS_URL")
    assert load_settings().cache_enabled is False


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"MONGODB_URI": "mongomock://localhost/jollyjet"}, "MONGODB_URI"),
        ({"MONGODB_URI": None}, "MONGODB_URI"),  # the default is mongomock
        ({"REDIS_URL": None}, "REDIS_URL"),
        ({"JOLLYJET_API_TOKENS": None}, "JOLLYJET_API_TOKENS"),
        ({"JOLLYJET_API_TOKENS": " , "}, "JOLLYJET_API_TOKENS"),
        ({"JOLLYJET_API_TOKENS": "short-secret"}, "at least 16 characters"),
        ({"JOLLYJET_API_TOKENS": "a-production-token-0001,short-secret"}, "at least 16 characters"),
    ],
)
def test_production_refuses_development_stand_ins(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], named: str
) -> None:
    _setenv(monkeypatch, _PRODUCTION)
    for variable, value in changes.items():
        if value is None:
            monkeypatch.delenv(variable)
        else:
            monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=named) as raised:
        load_settings()
    assert "short-secret" not in str(raised.value)  # tokens are never echoed


def test_tokens_stay_out_of_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, _PRODUCTION)
    assert "a-production-token-0001" not in repr(load_settings())


def test_a_variable_redis_url_now_carries_stops_the_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ignored silently, JOLLYJET_REDIS_TOPOLOGY=cluster with a redis:// URL would run as standalone.
    monkeypatch.setenv("JOLLYJET_REDIS_TOPOLOGY", "cluster")
    with pytest.raises(SettingsError, match="JOLLYJET_REDIS_TOPOLOGY"):
        load_settings()
