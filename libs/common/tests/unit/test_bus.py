"""The bus's authorisation model: the ACL file against the event catalogue, connection settings,
and the consumers' check of who an event claims to come from."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from ooda.bus import Acl, KafkaConnection, parse_acls, read_acls, subscriber_acls
from ooda.events import CATALOG, DecodeError, Event, verify_source
from ooda.examples import example_payloads
from ooda.settings import ServiceSettings
from ooda.testing import ACL_FILE

pytestmark = pytest.mark.unit


def test_the_acl_file_gives_each_service_exactly_what_the_catalogue_says_it_does() -> None:
    expected = set()
    for spec in CATALOG:
        for producer in spec.producers:
            expected.add(Acl(producer, "write", "topic", spec.topic))
        for consumer in spec.consumers:
            expected |= {
                Acl(consumer, "read", "topic", spec.topic),
                Acl(consumer, "write", "topic", spec.dead_letter_topic),
                Acl(consumer, "read", "group", f"ooda-{consumer}"),
            }
    rules = read_acls(ACL_FILE)
    assert len(rules) == len(set(rules))
    assert set(rules) == expected


def test_change_requested_is_writable_only_by_the_cmdb_and_elastic() -> None:
    writers = {
        a.principal
        for a in read_acls(ACL_FILE)
        if a.name == "change-requested" and a.operation == "write"
    }
    assert writers == {"cmdb", "elastic"}


def test_an_acl_line_with_an_unknown_operation_is_refused_naming_the_line() -> None:
    with pytest.raises(ValueError, match="line 2: unknown ACL operation 'own'"):
        parse_acls("# comment\ncmdb own topic deploy-done\n")


def test_a_subscriber_may_read_one_topic_with_groups_of_its_team_only() -> None:
    rules = subscriber_acls("payments", "deploy-done")
    assert {(a.principal, a.operation, a.resource, a.name, a.pattern) for a in rules} == {
        ("team-payments", "read", "topic", "deploy-done", "literal"),
        ("team-payments", "read", "group", "payments.", "prefixed"),
    }


def test_a_sasl_connection_needs_a_username_and_a_password() -> None:
    with pytest.raises(ValueError, match="username and a password"):
        KafkaConnection("127.0.0.1:9092", "SASL_PLAINTEXT", username="cmdb")
    conn = KafkaConnection(
        "127.0.0.1:9092", "SASL_PLAINTEXT", username="cmdb", password=SecretStr("pw")
    )
    assert conn.options() | {"sasl_plain_password": "..."} == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "cmdb",
        "sasl_plain_password": "...",
    }


@pytest.fixture(autouse=True)
def no_platform_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """These settings come from the tests alone, not from an env file loaded in the shell."""
    for name in (
        "OODA_AUTH_SECRET",
        "OODA_KAFKA_SECURITY_PROTOCOL",
        "OODA_KAFKA_USERNAME",
        "OODA_KAFKA_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)


class Service(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SVC_")


class ReadOnlyService(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RO_")
    verifies_tokens = False


def test_a_service_that_verifies_tokens_needs_the_secret_and_one_that_does_not_goes_without() -> (
    None
):
    with pytest.raises(ValidationError, match="OODA_AUTH_SECRET is required"):
        Service(database_url="postgresql+asyncpg://x/y")
    assert ReadOnlyService(database_url="postgresql+asyncpg://x/y").auth_secret is None


def test_a_service_on_sasl_without_its_password_does_not_start() -> None:
    with pytest.raises(ValidationError, match="username and a password"):
        ReadOnlyService(
            database_url="postgresql+asyncpg://x/y",
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_username="decision",
        )


@pytest.mark.parametrize("spec", CATALOG, ids=lambda spec: spec.topic)
def test_an_event_claiming_a_source_that_may_not_publish_its_type_is_refused(spec: object) -> None:
    payload = next(p for p in example_payloads() if type(p) is spec.model)  # type: ignore[attr-defined]
    for source in spec.sources:  # type: ignore[attr-defined]
        assert verify_source(Event.new(payload, source=source)).source == source
    with pytest.raises(DecodeError, match="may not publish"):
        verify_source(Event.new(payload, source="/ooda/intruder"))
