"""Sentinel and Cluster settings: what each topology needs, and errors that name the variable."""

from __future__ import annotations

import pytest
from pydantic import AliasChoices

from jollyjet.jobs import celery_config
from jollyjet.settings import RedisTopology, Settings, SettingsError, load_settings, parse_sentinels

_SENTINEL = {
    "JOLLYJET_REDIS_TOPOLOGY": "sentinel",
    "JOLLYJET_REDIS_SENTINELS": "10.0.0.1:26379, sentinel-b.internal:26379,[::1]:26380",
    "JOLLYJET_REDIS_SENTINEL_MASTER": "catalog",
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


def test_sentinel_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, {**_SENTINEL, "JOLLYJET_REDIS_PASSWORD": "s3cret", "JOLLYJET_REDIS_TLS": "true"})
    settings = load_settings()
    assert settings.redis_topology is RedisTopology.SENTINEL
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("sentinel-b.internal", 26379), ("::1", 26380))
    assert settings.redis_sentinel_master == "catalog" and settings.redis_tls
    assert not settings.embedded_redis
    assert "s3cret" not in repr(settings)  # the password is a secret, never printed


def test_cluster_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, {"JOLLYJET_REDIS_TOPOLOGY": "cluster", "REDIS_URL": "rediss://:pw@node-1.internal:7000/0"})
    settings = load_settings()
    assert settings.redis_topology is RedisTopology.CLUSTER and not settings.embedded_redis
    # A cluster node is no Celery broker: without CELERY_BROKER_URL tasks stay in-process.
    assert settings.broker_url == "memory://"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"JOLLYJET_REDIS_SENTINELS": "10.0.0.1"}, "JOLLYJET_REDIS_SENTINELS"),
        ({"JOLLYJET_REDIS_SENTINELS": "10.0.0.1:0"}, "JOLLYJET_REDIS_SENTINELS"),
        ({"JOLLYJET_REDIS_SENTINELS": "10.0.0.1:65536"}, "JOLLYJET_REDIS_SENTINELS"),
        ({"JOLLYJET_REDIS_SENTINELS": "bad host:26379"}, "JOLLYJET_REDIS_SENTINELS"),
        ({"JOLLYJET_REDIS_SENTINELS": "a:1,a:1"}, "JOLLYJET_REDIS_SENTINELS"),
        ({"JOLLYJET_REDIS_SENTINELS": " , "}, "JOLLYJET_REDIS_SENTINELS"),
        ({"JOLLYJET_REDIS_SENTINEL_MASTER": ""}, "JOLLYJET_REDIS_SENTINEL_MASTER"),
        ({"JOLLYJET_REDIS_SENTINEL_MASTER": "has space"}, "JOLLYJET_REDIS_SENTINEL_MASTER"),
        ({"REDIS_URL": "redis://10.0.0.1:6379/0"}, "REDIS_URL"),
        ({"JOLLYJET_REDIS_TLS_CA_FILE": "/etc/ca.pem"}, "JOLLYJET_REDIS_TLS_CA_FILE"),
    ],
)
def test_bad_sentinel_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], named: str
) -> None:
    _setenv(monkeypatch, {**_SENTINEL, **values})
    with pytest.raises(SettingsError, match=named):
        load_settings()


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"JOLLYJET_REDIS_TOPOLOGY": "cluster"}, "REDIS_URL"),
        ({"JOLLYJET_REDIS_TOPOLOGY": "cluster", "REDIS_URL": "unix:///tmp/r.sock"}, "REDIS_URL"),
        (
            {"JOLLYJET_REDIS_TOPOLOGY": "cluster", "REDIS_URL": "redis://n:7000", "JOLLYJET_REDIS_TLS": "1"},
            "JOLLYJET_REDIS_TLS",
        ),
        ({"REDIS_URL": "redis://n:6379", "JOLLYJET_REDIS_SENTINELS": "a:1"}, "JOLLYJET_REDIS_SENTINELS"),
        ({"REDIS_URL": "redis://n:6379", "JOLLYJET_REDIS_PASSWORD": "pw"}, "JOLLYJET_REDIS_PASSWORD"),
        ({"JOLLYJET_REDIS_TOPOLOGY": "mesh"}, "JOLLYJET_REDIS_TOPOLOGY"),
        ({"CELERY_BROKER_URL": "sentinel://10.0.0.1:26379"}, "CELERY_SENTINEL_MASTER"),
    ],
)
def test_bad_topology_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], named: str
) -> None:
    _setenv(monkeypatch, values)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_production_on_a_cluster_needs_its_own_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    production = {
        "JOLLYJET_ENV": "production",
        "MONGODB_URI": "mongodb://db.internal:27017/jollyjet",
        "JOLLYJET_API_TOKENS": "a-production-token-0001",
        "JOLLYJET_REDIS_TOPOLOGY": "cluster",
        "REDIS_URL": "redis://node-1.internal:7000/0",
    }
    _setenv(monkeypatch, production)
    with pytest.raises(SettingsError, match="CELERY_BROKER_URL"):
        load_settings()
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://broker.internal:6379/0")
    assert load_settings().broker_url == "redis://broker.internal:6379/0"


def test_a_celery_broker_behind_sentinel_gets_its_master_name(monkeypatch: pytest.MonkeyPatch) -> None:
    urls = "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379"
    _setenv(
        monkeypatch,
        {
            "CELERY_BROKER_URL": urls,
            "CELERY_RESULT_BACKEND": urls,
            "CELERY_SENTINEL_MASTER": "broker",
            "CELERY_SENTINEL_PASSWORD": "sentinel-secret",
        },
    )
    settings = load_settings()
    assert "sentinel-secret" not in repr(settings)
    config = celery_config(settings)
    assert config["broker_url"] == urls
    for options in (config["broker_transport_options"], config["result_backend_transport_options"]):
        assert options["master_name"] == "broker"
        assert options["sentinel_kwargs"] == {"password": "sentinel-secret"}


def test_parse_sentinels_names_the_bad_entry() -> None:
    with pytest.raises(ValueError, match="'x:y'"):
        parse_sentinels("a:1,x:y")
