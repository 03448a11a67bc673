"""Sentinel and Cluster settings (REDIS_URL's scheme): what each topology needs, and errors that name the variable."""

from __future__ import annotations

import pytest
from pydantic import AliasChoices

from jollyjet.jobs import celery_config
from jollyjet.settings import RedisTopology, Settings, SettingsError, load_settings, parse_sentinels

_SENTINELS = "10.0.0.1:26379, sentinel-b.internal:26379,[::1]:26380"


def _sentinel_url(sentinels: str = _SENTINELS, master: str = "catalog", scheme: str = "redis", tail: str = "") -> str:
    return f"{scheme}+sentinel://{sentinels}/{master}{tail}"


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
    url = _sentinel_url(
        f"user:s3cret@{_SENTINELS}", scheme="rediss", tail="?sentinel_password=s%40nt&ssl_ca_certs=/ca.pem"
    )
    _setenv(monkeypatch, {"REDIS_URL": url})
    settings = load_settings()
    assert settings.redis_topology is RedisTopology.SENTINEL
    target = settings.redis_sentinel
    assert target.sentinels == (("10.0.0.1", 26379), ("sentinel-b.internal", 26379), ("::1", 26380))
    assert target.master == "catalog" and target.tls and target.ca_file == "/ca.pem"
    assert (target.username, target.password, target.sentinel_password) == ("user", "s3cret", "s@nt")
    assert not settings.embedded_redis
    assert "s3cret" not in repr(settings)  # the password is a secret, never printed
    plain = _sentinel_url()
    _setenv(monkeypatch, {"REDIS_URL": plain})
    target = load_settings().redis_sentinel
    assert not target.tls and (target.username, target.password, target.sentinel_password) == (None, None, None)


def test_cluster_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, {"REDIS_URL": "rediss+cluster://:pw@node-1.internal:7000/0"})
    settings = load_settings()
    assert settings.redis_topology is RedisTopology.CLUSTER and not settings.embedded_redis
    assert settings.redis_node_url == "rediss://:pw@node-1.internal:7000/0"  # what redis-py's RedisCluster reads
    # A cluster node is no Celery broker: without CELERY_BROKER_URL tasks stay in-process.
    assert settings.broker_url == "memory://"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"sentinels": "10.0.0.1"}, "10.0.0.1"),
        ({"sentinels": "10.0.0.1:0"}, "10.0.0.1:0"),
        ({"sentinels": "10.0.0.1:65536"}, "10.0.0.1:65536"),
        ({"sentinels": "bad host:26379"}, "bad host:26379"),
        ({"sentinels": "a:1,a:1"}, "listed twice"),
        ({"sentinels": " , "}, "no sentinel"),
        ({"master": ""}, "name the master"),
        ({"master": "has space"}, "name the master"),
        ({"tail": "?ssl_ca_certs=/etc/ca.pem"}, "only used with rediss"),
        ({"tail": "?password=x"}, "unknown option 'password'"),
    ],
)
def test_bad_sentinel_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], named: str
) -> None:
    _setenv(monkeypatch, {"REDIS_URL": _sentinel_url(**values)})
    with pytest.raises(SettingsError, match=f"REDIS_URL: .*{named}"):
        load_settings()


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"REDIS_URL": "unix+cluster:///tmp/r.sock"}, "REDIS_URL"),
        ({"REDIS_URL": "redis+mesh://n:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "sentinel://10.0.0.1:26379"}, "REDIS_URL"),
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
        "REDIS_URL": "redis+cluster://node-1.internal:7000/0",
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
