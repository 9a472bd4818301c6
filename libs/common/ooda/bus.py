"""Who may do what on the event bus: Kafka connection settings (SASL/SCRAM, TLS), the ACL file,
SCRAM credentials and read-only subscriber grants, through the broker's admin API.

Every Kafka client the platform creates (services, CLI, tests, benchmarks, examples) takes its
options from `KafkaConnection.options()`, so one set of variables decides how it authenticates:
`OODA_KAFKA_BOOTSTRAP`, `OODA_KAFKA_SECURITY_PROTOCOL` (PLAINTEXT, SASL_PLAINTEXT, SASL_SSL, SSL),
`OODA_KAFKA_SASL_MECHANISM` (SCRAM-SHA-512), `OODA_KAFKA_USERNAME`, `OODA_KAFKA_PASSWORD` and
`OODA_KAFKA_SSL_CAFILE`.

`python -m ooda.bus --env-file ENV_FILE provision ACL_FILE` (run by `deploy/local/ooda-local
infra-up`, as the admin principal of the env file) creates or updates each service principal's
SCRAM credentials from the env file and the ACLs of the file; it is idempotent. `wait` and
`topics` serve the script's readiness check and status.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)
from pydantic import SecretStr

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SCRAM_SHA_512 = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192


class BusError(RuntimeError):
    """The broker refused or failed an admin operation; the message says which and why."""


@dataclass(frozen=True)
class KafkaConnection:
    """Where the broker is and how a client authenticates to it."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = SCRAM_SHA_512
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: str | None = None

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise ValueError(
                f"Kafka security protocol {self.security_protocol!r} is not one of {PROTOCOLS}"
            )
        if self.sasl and (not self.username or self.password is None):
            raise ValueError(
                f"{self.security_protocol} needs a username and a password "
                "(OODA_KAFKA_USERNAME, OODA_KAFKA_PASSWORD)"
            )

    @property
    def sasl(self) -> bool:
        """Whether the client authenticates with SASL."""
        return self.security_protocol.startswith("SASL_")

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, prefix: str = "OODA_KAFKA_"
    ) -> KafkaConnection:
        """The connection the `<prefix>*` variables describe (`OODA_KAFKA_*` by default)."""
        env = os.environ if env is None else env
        password = env.get(f"{prefix}PASSWORD")
        return cls(
            bootstrap=env.get("OODA_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            security_protocol=env.get("OODA_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=env.get("OODA_KAFKA_SASL_MECHANISM", SCRAM_SHA_512),
            username=env.get(f"{prefix}USERNAME") or None,
            password=SecretStr(password) if password else None,
            ssl_cafile=env.get("OODA_KAFKA_SSL_CAFILE") or None,
        )

    def as_user(self, username: str, password: str) -> KafkaConnection:
        """The same broker, authenticated as another principal."""
        return KafkaConnection(
            self.bootstrap,
            self.security_protocol,
            self.sasl_mechanism,
            username,
            SecretStr(password),
            self.ssl_cafile,
        )

    def options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.sasl:
            assert self.password is not None
            opts |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value(),
            }
        if self.security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            opts["ssl_context"] = create_ssl_context(cafile=self.ssl_cafile)
        return opts


def kafka_options(target: str | KafkaConnection) -> dict[str, Any]:
    """aiokafka options for a connection, or for a bare bootstrap address (no authentication)."""
    conn = KafkaConnection(target) if isinstance(target, str) else target
    return conn.options()


# --- ACLs ------------------------------------------------------------------------------------
# Kafka's enums (org.apache.kafka.common.resource / acl).
RESOURCE_TYPES = {"topic": 2, "group": 3}
PATTERNS = {"literal": 3, "prefixed": 4}
OPERATIONS = {"read": 3, "write": 4, "describe": 8}
ALLOW = 3


@dataclass(frozen=True)
class Acl:
    """One ALLOW rule: `principal` may `operation` the `resource` named `name`."""

    principal: str
    operation: str
    resource: str
    name: str
    pattern: str = "literal"

    def __post_init__(self) -> None:
        for value, known, what in (
            (self.operation, OPERATIONS, "operation"),
            (self.resource, RESOURCE_TYPES, "resource type"),
            (self.pattern, PATTERNS, "pattern"),
        ):
            if value not in known:
                raise ValueError(f"unknown ACL {what} {value!r} (one of {', '.join(known)})")

    def prefixed(self, prefix: str) -> Acl:
        """The same rule for topics and groups named under `prefix` (test or staging runs)."""
        return Acl(self.principal, self.operation, self.resource, prefix + self.name, self.pattern)

    def entry(self) -> tuple[int, str, int, str, str, int, int]:
        """The rule as a CreateAcls v1 creation (also a DeleteAcls v1 filter)."""
        return (
            RESOURCE_TYPES[self.resource],
            self.name,
            PATTERNS[self.pattern],
            f"User:{self.principal}",
            "*",
            OPERATIONS[self.operation],
            ALLOW,
        )


def parse_acls(text: str) -> list[Acl]:
    """The rules of an ACL file: `principal operation resource name [pattern]` per line."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) not in (4, 5):
            raise ValueError(
                f"line {number}: expected 'principal operation resource name [pattern]'"
            )
        try:
            rules.append(Acl(*fields))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from exc
    return rules


def read_acls(path: Path) -> list[Acl]:
    """The rules of the ACL file at `path`."""
    return parse_acls(path.read_text())


def subscriber_principal(team: str) -> str:
    """The Kafka principal of a team's read-only subscription."""
    return f"team-{team}"


def subscriber_acls(team: str, topic: str) -> list[Acl]:
    """Read `topic`, with consumer groups named `<team>.` (and nothing else)."""
    principal = subscriber_principal(team)
    return [
        Acl(principal, "read", "topic", topic),
        Acl(principal, "read", "group", f"{team}.", "prefixed"),
    ]


# --- Admin requests aiokafka has no call for ------------------------------------------------
class _AlterScramResponse(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScramRequest(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponse
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScram(Request[_AlterScramRequest]):
    API_KEY = 51

    def __init__(
        self, upsertions: list[tuple[Any, ...]], deletions: list[tuple[Any, ...]] | None = None
    ) -> None:
        self.upsertions = upsertions
        self.deletions = deletions or []

    def build(self, request_struct_class: type[_AlterScramRequest]) -> _AlterScramRequest:
        return request_struct_class(self.deletions, self.upsertions, {})


class _DescribeScramResponse(Response):
    API_KEY = 50
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", CompactString("utf-8")),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                (
                    "credential_infos",
                    CompactArray(
                        ("mechanism", Int8), ("iterations", Int32), ("tags", TaggedFields)
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _DescribeScramRequest(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 50
    API_VERSION = 0
    RESPONSE_TYPE = _DescribeScramResponse
    SCHEMA = Schema(
        ("users", CompactArray(("name", CompactString("utf-8")), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _DescribeScram(Request[_DescribeScramRequest]):
    API_KEY = 50

    def __init__(self, users: list[str]) -> None:
        self.users = users

    def build(self, request_struct_class: type[_DescribeScramRequest]) -> _DescribeScramRequest:
        return request_struct_class([(u, {}) for u in self.users], {})


class _CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, creations: list[tuple[Any, ...]]) -> None:
        self.creations = creations

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self.creations)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):
    API_KEY = 31

    def __init__(self, filters: list[tuple[Any, ...]]) -> None:
        self.filters = filters

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(self.filters)


def _error(code: int, message: str | None) -> str:
    """A Kafka error code as its name, with the broker's message if any."""
    name = for_code(code).__name__
    return f"{name}: {message}" if message else name


MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}


def _scram_upsertion(user: str, password: str, mechanism: str) -> tuple[Any, ...]:
    # RFC 5802 SaltedPassword := Hi(password, salt, i), i.e. PBKDF2 with the mechanism's hash.
    code, digest = MECHANISMS[mechanism]
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
    return (user, code, SCRAM_ITERATIONS, salt, salted, {})


class BusAdmin:
    """Admin operations on principals and ACLs, as the admin (super user) principal."""

    def __init__(self, conn: KafkaConnection) -> None:
        self.conn = conn
        self.client = AIOKafkaAdminClient(**conn.options(), request_timeout_ms=15_000)

    async def __aenter__(self) -> BusAdmin:
        await self.client.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def _send(self, request: Request[Any]) -> Any:
        return await self.client._send_request(request)  # no public call for these requests

    async def set_credentials(self, users: Mapping[str, str]) -> None:
        """Create or replace the SCRAM credentials of each user (name -> password)."""
        if not users:
            return
        mechanism = self.conn.sasl_mechanism if self.conn.sasl else SCRAM_SHA_512
        response = await self._send(
            _AlterScram([_scram_upsertion(u, p, mechanism) for u, p in users.items()])
        )
        failed = [f"{u}: {_error(code, msg)}" for u, code, msg, _ in response.results if code]
        if failed:
            raise BusError("setting SCRAM credentials failed: " + "; ".join(failed))

    async def delete_credentials(self, user: str) -> None:
        """Remove `user`'s SCRAM credentials: it can no longer authenticate."""
        mechanism = self.conn.sasl_mechanism if self.conn.sasl else SCRAM_SHA_512
        response = await self._send(_AlterScram([], [(user, MECHANISMS[mechanism][0], {})]))
        resource_not_found = 91
        failed = [
            f"{u}: {_error(code, msg)}"
            for u, code, msg, _ in response.results
            if code not in (0, resource_not_found)
        ]
        if failed:
            raise BusError("deleting SCRAM credentials failed: " + "; ".join(failed))

    async def delete_acls_of(self, principal: str) -> None:
        """Remove every rule that names `principal`."""
        any_ = 1
        response = await self._send(
            _DeleteAcls([(any_, None, any_, f"User:{principal}", None, any_, any_)])
        )
        failed = [_error(code, msg) for code, msg, _ in response.filter_responses if code]
        if failed:
            raise BusError("deleting ACLs failed: " + "; ".join(failed))

    async def has_credentials(self, user: str) -> bool:
        """Whether `user` has SCRAM credentials."""
        response = await self._send(_DescribeScram([user]))
        if response.error_code:
            error = _error(response.error_code, response.error_message)
            raise BusError(f"describing SCRAM credentials failed: {error}")
        resource_not_found = 91
        for name, code, message, infos, _ in response.results:
            if name == user and code not in (0, resource_not_found):
                raise BusError(
                    f"describing SCRAM credentials of {user} failed: {_error(code, message)}"
                )
            if name == user and not code:
                return bool(infos)
        return False

    async def create_acls(self, acls: Iterable[Acl], timeout_s: float = 15.0) -> None:
        """Add ALLOW rules (adding an existing rule changes nothing); returns once the broker
        enforces them (the controller applies them to the brokers asynchronously)."""
        entries = [acl.entry() for acl in acls]
        if not entries:
            return
        response = await self._send(_CreateAcls(entries))
        failed = [
            f"{entry[3]} {entry[1]}: {_error(code, msg)}"
            for entry, (code, msg) in zip(entries, response.creation_responses, strict=True)
            if code
        ]
        if failed:
            raise BusError("creating ACLs failed: " + "; ".join(failed))
        wanted = set(entries)
        async with asyncio.timeout(timeout_s):
            while not wanted <= await self.bindings():
                await asyncio.sleep(0.1)

    async def bindings(self) -> set[tuple[int, str, int, str, str, int, int]]:
        """Every ACL the broker enforces now, as CreateAcls entries."""
        any_ = 1
        response = await self._send(DescribeAclsRequest(any_, None, any_, None, None, any_, any_))
        if response.error_code:
            raise BusError(
                f"describing ACLs failed: {_error(response.error_code, response.error_message)}"
            )
        return {
            (rtype, name, pattern, principal, host, operation, permission)
            for rtype, name, pattern, acls in response.resources
            for principal, host, operation, permission in acls
        }

    async def delete_acls(self, acls: Iterable[Acl]) -> None:
        """Remove exactly these rules (missing ones are ignored)."""
        filters = [acl.entry() for acl in acls]
        if not filters:
            return
        response = await self._send(_DeleteAcls(filters))
        failed = [_error(code, msg) for code, msg, _ in response.filter_responses if code]
        if failed:
            raise BusError("deleting ACLs failed: " + "; ".join(failed))


async def grant_subscriber(
    admin: KafkaConnection, team: str, topic: str, *, new_password: bool = True
) -> tuple[str, str | None]:
    """Let `team`'s read-only principal read `topic` (with groups `<team>.*`): returns
    (username, password). A principal that exists keeps its password (None) unless
    `new_password`; a new one always gets one."""
    username = subscriber_principal(team)
    password: str | None = None
    async with BusAdmin(admin) as bus:
        if new_password or not await bus.has_credentials(username):
            password = secrets.token_urlsafe(24)
            await bus.set_credentials({username: password})
        await bus.create_acls(subscriber_acls(team, topic))
    if password is not None:
        await _until_served(admin.as_user(username, password), topic)
    return username, password


async def revoke_subscriber(admin: KafkaConnection, team: str, topic: str | None = None) -> str:
    """Take `topic` away from `team`'s principal, or (no topic) every rule and its credentials:
    returns the principal's name."""
    username = subscriber_principal(team)
    async with BusAdmin(admin) as bus:
        if topic is None:
            await bus.delete_credentials(username)
            await bus.delete_acls_of(username)
        else:
            await bus.delete_acls([Acl(username, "read", "topic", topic)])
        # Returns once the broker enforces it (the controller updates brokers asynchronously).
        async with asyncio.timeout(15):
            while topic is None and await bus.has_credentials(username):
                await asyncio.sleep(0.1)
            while any(
                rule[3] == f"User:{username}" and (topic is None or rule[1] == topic)
                for rule in await bus.bindings()
            ):
                await asyncio.sleep(0.1)
    return username


async def _until_served(conn: KafkaConnection, topic: str, timeout_s: float = 15.0) -> None:
    """Wait until `conn` authenticates and sees `topic` (new credentials reach the broker
    asynchronously too)."""
    async with asyncio.timeout(timeout_s):
        while True:
            client = AIOKafkaAdminClient(**conn.options(), request_timeout_ms=3_000)
            try:
                await client.start()
                if topic in await client.list_topics():
                    return
            except Exception:
                pass
            finally:
                await client.close()
            await asyncio.sleep(0.2)


def service_credentials(env: Mapping[str, str], principals: Iterable[str]) -> dict[str, str]:
    """username -> password of each principal, from `<NAME>_KAFKA_USERNAME/PASSWORD`."""
    found = {}
    for name in principals:
        key = name.upper().replace("-", "_")
        user, password = env.get(f"{key}_KAFKA_USERNAME"), env.get(f"{key}_KAFKA_PASSWORD")
        if not user or not password:
            raise BusError(f"{key}_KAFKA_USERNAME/PASSWORD missing for principal {name!r}")
        if user != name:
            raise BusError(f"{key}_KAFKA_USERNAME is {user!r}; the ACL file names {name!r}")
        found[user] = password
    return found


async def provision(admin: KafkaConnection, acls: list[Acl], env: Mapping[str, str]) -> None:
    """Credentials of every principal the ACL file names, then its rules."""
    principals = sorted({acl.principal for acl in acls})
    async with BusAdmin(admin) as bus:
        await bus.set_credentials(service_credentials(env, principals))
        await bus.create_acls(acls)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file (`export ` and quotes allowed)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


async def _wait_ready(admin: KafkaConnection, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        client = AIOKafkaAdminClient(**admin.options(), request_timeout_ms=3_000)
        try:
            await client.start()
            await client.list_topics()
            return
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await client.close()


async def _topics(admin: KafkaConnection) -> list[tuple[str, int]]:
    client = AIOKafkaAdminClient(**admin.options(), request_timeout_ms=10_000)
    await client.start()
    try:
        found = await client.describe_topics()
        return sorted((t["topic"], len(t["partitions"])) for t in found if not t["error_code"])
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ooda.bus", description=__doc__.split("\n")[0])
    parser.add_argument("--env-file", type=Path, required=True, help="credentials (KEY=value)")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("provision", help="service credentials and ACLs (idempotent)")
    cmd.add_argument("acl_file", type=Path)
    cmd = sub.add_parser("wait", help="until the admin principal is served, or fail")
    cmd.add_argument("timeout_s", type=float)
    sub.add_parser("topics", help="print 'name partitions' of every topic")
    args = parser.parse_args(argv)
    try:
        env = read_env_file(args.env_file)
        admin = KafkaConnection.from_env(env)
        if args.command == "wait":
            asyncio.run(_wait_ready(admin, args.timeout_s))
        elif args.command == "topics":
            for name, partitions in asyncio.run(_topics(admin)):
                print(name, partitions)
        else:
            acls = read_acls(args.acl_file)
            asyncio.run(provision(admin, acls, env))
            principals = sorted({acl.principal for acl in acls})
            print(f"Kafka principals {', '.join(principals)}: credentials set, {len(acls)} ACLs")
    except Exception as exc:
        print(f"{args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
