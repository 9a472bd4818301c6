"""Inventory items: field validation, label rules, typed relations and custom attribute schemas."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from cmdb.config import DEFAULT_ATTRIBUTE_SCHEMAS
from cmdb.domain import (
    ApplicationSpec,
    AttributeSchema,
    AttributeSpec,
    Host,
    Instance,
    ItemRef,
    Problem,
    Relation,
    ReplicaBounds,
    attribute_problems,
    implied_relations,
    label_key_problem,
    parse_item,
    references,
)

pytestmark = pytest.mark.unit


def host(**overrides: object) -> Host:
    fields: dict[str, object] = {
        "id": "h1",
        "zone_id": "zone-a",
        "pool_id": "general",
        "address": "10.0.0.1",
        "cpu_millis": 4000,
        "memory_mib": 8192,
    }
    return Host.model_validate(fields | overrides)


def test_an_item_is_parsed_into_the_type_its_kind_names() -> None:
    item = parse_item(
        {
            "kind": "instance",
            "id": "web-1",
            "app_id": "web",
            "version": "1.2.0",
            "host_id": "h1",
            "zone_id": "zone-a",
            "endpoint": "10.0.0.1:8080",
            "started_at": "2025-01-01T00:00:00Z",
        }
    )

    assert isinstance(item, Instance)
    assert item.started_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert item.ref == ItemRef(kind="instance", id="web-1")


def test_unknown_fields_are_refused_with_their_path() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_item({**host().model_dump(), "colour": "red"})

    assert [e["loc"] for e in caught.value.errors()] == [("host", "colour")]


def test_a_naive_start_time_is_refused() -> None:
    with pytest.raises(ValidationError):
        Instance(
            id="web-1",
            app_id="web",
            version="1",
            host_id="h1",
            zone_id="a",
            endpoint="h1:80",
            started_at=datetime(2025, 1, 1),
        )


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("app", None),
        ("example.com/app", None),
        ("a.b-c_d", None),
        ("-app", "must start and end with a letter or digit"),
        ("a/b/c", "more than one '/'"),
        ("Example.com/app", "lowercase DNS subdomain"),
        ("example.com/", "empty name"),
        ("k" * 64, "longer than 63"),
    ],
)
def test_label_keys_follow_the_kubernetes_rules(key: str, problem: str | None) -> None:
    found = label_key_problem(key)

    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_an_item_with_a_bad_label_is_refused_naming_the_label() -> None:
    with pytest.raises(ValidationError) as caught:
        host(labels={"rack": "r1", "bad key": "x", "ok": "-no"})

    message = caught.value.errors()[0]["msg"]
    assert "'bad key'" in message
    assert "value '-no'" in message


def test_replica_bounds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="min <= desired <= max"):
        ReplicaBounds(min=3, desired=2, max=5)


def test_a_spec_fills_in_defaults_for_health_slo_and_scaling() -> None:
    spec = ApplicationSpec(
        id="web",
        revision=1,
        artifact="registry/web",
        version="1.0.0",
        replicas=ReplicaBounds(min=2, desired=3, max=10),
    )

    assert spec.health_check.path == "/healthz"
    assert spec.slo.availability == 0.999
    assert spec.scaling.target_utilisation == 0.6
    assert spec.budget is None


def test_a_relation_refuses_ends_of_the_wrong_kind() -> None:
    with pytest.raises(ValidationError, match="runs_on links instance to host, not host to pool"):
        Relation.between(
            "runs_on", ItemRef(kind="host", id="h1"), ItemRef(kind="pool", id="general")
        )


def test_relation_ids_are_derived_so_the_same_edge_is_one_item() -> None:
    web, db = ItemRef(kind="application", id="web"), ItemRef(kind="application", id="db")

    assert Relation.between("depends_on", web, db).id == "depends_on.application.web.application.db"
    assert Relation.between("depends_on", web, db) == Relation.between("depends_on", web, db)


def test_hosts_and_instances_imply_their_relations() -> None:
    instance = Instance(
        id="web-1",
        app_id="web",
        version="1",
        host_id="h1",
        zone_id="zone-a",
        endpoint="h1:80",
        started_at=datetime(2025, 1, 1, tzinfo=UTC),
    )

    assert [(r.type, r.target.kind, r.target.id) for r in implied_relations(host())] == [
        ("belongs_to", "zone", "zone-a"),
        ("belongs_to", "pool", "general"),
    ]
    assert [(r.type, str(r.target)) for r in implied_relations(instance)] == [
        ("runs_on", "host/h1")
    ]
    assert [str(r) for r in references(instance)] == ["application/web", "host/h1", "zone/zone-a"]


SCHEMAS = {
    "host": AttributeSchema(
        attributes={
            "rack": AttributeSpec(type="string", required=True),
            "gpus": AttributeSpec(type="integer"),
            "disk": AttributeSpec(type="string", enum=("ssd", "hdd")),
        }
    )
}


def test_attributes_matching_the_schema_have_no_problems() -> None:
    assert (
        attribute_problems(host(attributes={"rack": "r1", "gpus": 2, "disk": "ssd"}), SCHEMAS) == []
    )


def test_every_attribute_problem_is_reported_with_its_path() -> None:
    problems = attribute_problems(host(attributes={"gpus": True, "disk": "tape", "x": 1}), SCHEMAS)

    assert problems == [
        Problem(path=("attributes", "disk"), message="must be one of 'ssd', 'hdd', got 'tape'"),
        Problem(path=("attributes", "gpus"), message="must be of type integer, got True"),
        Problem(path=("attributes", "x"), message="unknown attribute for host"),
        Problem(path=("attributes", "rack"), message="required"),
    ]


def test_a_type_without_a_schema_accepts_no_custom_attributes() -> None:
    assert attribute_problems(host(), {}) == []
    assert attribute_problems(host(attributes={"rack": "r1"}), {}) == [
        Problem(path=("attributes", "rack"), message="unknown attribute for host")
    ]


def test_hosts_accept_the_ssh_attributes_by_default() -> None:
    ssh = {"ssh_port": 2222, "ssh_user": "deploy", "ssh_remote_dir": "/srv/ooda"}
    assert attribute_problems(host(attributes=ssh), DEFAULT_ATTRIBUTE_SCHEMAS) == []
    assert attribute_problems(host(attributes={"ssh_port": "22"}), DEFAULT_ATTRIBUTE_SCHEMAS) == [
        Problem(path=("attributes", "ssh_port"), message="must be of type integer, got '22'")
    ]


def test_attribute_names_in_a_schema_follow_the_label_name_rules() -> None:
    with pytest.raises(ValidationError, match="attribute 'bad name'"):
        AttributeSchema(attributes={"bad name": AttributeSpec(type="string")})


@pytest.mark.parametrize(
    "endpoint",
    [
        "169.254.169.254/latest/meta-data#:80",
        "h/admin?x=1:80",
        "user@h:80",
        "h#x:80",
        "[babc]:80",
        "h:0",
        "h:99999",
    ],
)
def test_an_instance_endpoint_that_is_not_strictly_host_port_is_refused(endpoint: str) -> None:
    data = {
        "kind": "instance",
        "id": "web-1",
        "app_id": "web",
        "version": "1",
        "host_id": "h1",
        "zone_id": "zone-a",
        "endpoint": endpoint,
        "started_at": "2026-01-01T00:00:00Z",
    }
    with pytest.raises(ValidationError) as caught:
        parse_item(data)
    assert [e["loc"] for e in caught.value.errors()] == [("instance", "endpoint")]
    assert parse_item(data | {"endpoint": "[::1]:8080"}).endpoint == "[::1]:8080"
