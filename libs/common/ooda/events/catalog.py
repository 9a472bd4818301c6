"""The event catalogue generated from the contracts: JSON Schemas and an AsyncAPI 3.0 document.

`ooda-contracts asyncapi` prints the AsyncAPI document; `ooda-contracts schemas DIR` writes one
JSON Schema per event type; `ooda-contracts topics` lists every topic (with dead-letter topics).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from ooda import __version__
from ooda.events.contracts import CATALOG, EventSpec, topics
from ooda.examples import example_payloads

CE_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes in Kafka binary mode, plus W3C trace context.",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "unique event id; consumers deduplicate on it"},
        "ce_source": {"type": "string", "description": "producing service, e.g. /ooda/monitor"},
        "ce_type": {"type": "string", "description": "versioned event type"},
        "ce_subject": {"type": "string", "description": "the application id (same as the key)"},
        "ce_time": {"type": "string", "format": "date-time"},
        "content-type": {"type": "string", "const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context of the producer"},
    },
}


def _message_name(spec: EventSpec) -> str:
    return spec.model.__name__ + "V" + spec.type.rsplit(".v", 1)[1]


def _channel_name(spec: EventSpec) -> str:
    head, *rest = spec.topic.split("-")
    return head + "".join(word.title() for word in rest)


def json_schemas() -> dict[str, dict[str, Any]]:
    """One standalone JSON Schema per event type, keyed by the CloudEvents type."""
    out = {}
    for spec in CATALOG:
        schema = spec.model.model_json_schema(mode="validation")
        schema["$id"] = f"urn:ooda:event:{spec.type}"
        schema["description"] = spec.description
        out[spec.type] = schema
    return out


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic, message, schema and example."""
    _, defs = models_json_schema(
        [(spec.model, "validation") for spec in CATALOG],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = defs.get("$defs", {})
    examples = {type(p): p for p in example_payloads()}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in CATALOG:
        name, channel = _message_name(spec), _channel_name(spec)
        example = examples[spec.model]
        messages[name] = {
            "name": name,
            "title": spec.type,
            "summary": spec.description,
            "contentType": "application/json",
            "headers": CE_HEADERS_SCHEMA,
            "payload": {"$ref": f"#/components/schemas/{spec.model.__name__}"},
            "bindings": {"kafka": {"key": {"type": "string"}, "bindingVersion": "0.5.0"}},
            "examples": [
                {
                    "name": "example",
                    "headers": {
                        "ce_specversion": "1.0",
                        "ce_id": "6f1c0a52-5d8e-4b7e-9a53-0c6a3f0b1d2e",
                        "ce_source": f"/ooda/{spec.producer.split(',')[0].strip()}",
                        "ce_type": spec.type,
                        "ce_subject": example.app,
                        "ce_time": "2026-11-30T12:00:05Z",
                        "content-type": "application/json",
                    },
                    "payload": example.model_dump(mode="json"),
                }
            ],
        }
        channels[channel] = {
            "address": spec.topic,
            "description": (
                f"{spec.description} Key: the application id. Produced by {spec.producer}; "
                f"consumed by {', '.join(spec.consumers) or 'subscribers outside the platform'}. "
                f"Undecodable records go to `{spec.dead_letter_topic}`."
            ),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"publish{channel[0].upper()}{channel[1:]}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"{spec.producer} publishes {spec.type}",
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "OODA platform events",
            "version": __version__,
            "description": (
                "Every event of the OODA closed loop, as CloudEvents 1.0 in Kafka binary mode. "
                "Delivery is at-least-once: deduplicate on `ce_id`. Within a version, fields are "
                "only added; ignore fields you do not know."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the broker started by deploy/local (SASL_PLAINTEXT on 127.0.0.1)",
                "security": [{"$ref": "#/components/securitySchemes/scram"}],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": {
                "scram": {
                    "type": "scramSha512",
                    "description": (
                        "Every client authenticates with SASL/SCRAM-SHA-512 and is authorised by "
                        "ACL: each topic is writable only by its producer services. Subscribers "
                        "get a read-only principal from `ooda events grant TEAM TOPIC` and "
                        "consume in consumer groups named `TEAM.<anything>`."
                    ),
                }
            },
        },
    }


def main(argv: list[str] | None = None) -> None:
    """Command line of the catalogue generator."""
    parser = argparse.ArgumentParser(description="Generate the OODA event catalogue")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("asyncapi", help="print the AsyncAPI 3.0 document (YAML)")
    schemas = sub.add_parser("schemas", help="write one JSON Schema per event type")
    schemas.add_argument("out", type=Path)
    sub.add_parser("topics", help="list every topic")
    args = parser.parse_args(argv)
    if args.command == "asyncapi":
        print(yaml.safe_dump(asyncapi(), sort_keys=False, width=100), end="")
    elif args.command == "schemas":
        args.out.mkdir(parents=True, exist_ok=True)
        for event_type, schema in json_schemas().items():
            (args.out / f"{event_type}.json").write_text(json.dumps(schema, indent=2) + "\n")
    else:
        print("\n".join(topics()))


if __name__ == "__main__":
    main()
