"""How the ssh driver reads hosts from the CMDB, and the settings it needs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.config import Settings
from pipeline.driver import InstanceSpec
from pipeline.ssh_driver import (
    SshDriver,
    SshDriverError,
    SshHost,
    SshHostUnreachable,
    ssh_host_from_json,
)

pytestmark = pytest.mark.unit


def test_a_cmdb_host_maps_to_its_address_and_ssh_attributes() -> None:
    item = {
        "id": "web-1",
        "zone_id": "z1",
        "address": "web-1.dc1.example",
        "attributes": {"ssh_port": 2222, "ssh_user": "deploy", "ssh_remote_dir": "/srv/ooda"},
    }
    assert ssh_host_from_json(item, "ooda") == SshHost(
        "web-1", "web-1.dc1.example", 2222, "deploy", "/srv/ooda"
    )
    plain = ssh_host_from_json({"id": "web-2", "address": "10.0.0.2"}, "ooda")
    assert (plain.port, plain.user, plain.remote_dir) == (22, "ooda", None)


@pytest.mark.parametrize("address", ["", "fe80::1", "10.0.0.1:22", "root@10.0.0.1", "a b"])
def test_an_address_that_cannot_form_a_host_port_endpoint_is_refused(address: str) -> None:
    with pytest.raises(SshDriverError, match="cannot form a host:port endpoint"):
        ssh_host_from_json({"id": "h", "address": address}, "ooda")


def test_a_port_attribute_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(SshDriverError, match="is not a port number"):
        ssh_host_from_json({"id": "h", "address": "h1", "attributes": {"ssh_port": "x"}}, "u")


BASE = {"database_url": "postgresql+asyncpg://u@127.0.0.1/db", "auth_secret": "s" * 32}


def test_the_ssh_driver_needs_a_key_and_a_known_hosts_file(tmp_path: Path) -> None:
    key, known = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    with pytest.raises(ValidationError, match="PIPELINE_SSH_KEY_PATH must name a readable"):
        Settings(**BASE, driver="ssh", ssh_known_hosts=known)
    key.write_text("key")
    with pytest.raises(ValidationError, match="PIPELINE_SSH_KNOWN_HOSTS must name a readable"):
        Settings(**BASE, driver="ssh", ssh_key_path=key, ssh_known_hosts=known)
    known.write_text("")
    settings = Settings(**BASE, driver="ssh", ssh_key_path=key, ssh_known_hosts=known, ssh_bind="")
    assert (settings.ssh_bind, Settings(**BASE).driver) == (None, "local")


def test_an_instance_on_a_host_the_driver_cannot_reach_counts_as_stopped_and_dead(
    tmp_path: Path,
) -> None:
    async def hosts() -> Mapping[str, SshHost]:
        return {"h1": SshHost("h1", "10.0.0.1")}

    driver = SshDriver(hosts, client_key=tmp_path / "key", known_hosts=tmp_path / "known")
    try:
        driver._where["i-1"] = "h1"  # started there before the host was lost
        lost = SshHostUnreachable("cannot reach host h1 (root@10.0.0.1:22): timed out")
        driver._unreachable["h1"] = (time.monotonic() + 60, lost)

        driver.stop("i-1")  # no error: changes go on without the host

        assert driver.alive("i-1") is False
        assert "cannot reach host h1" in driver.describe_exit("i-1")
    finally:
        driver.close()


def test_a_private_key_that_needs_a_passphrase_is_reported_as_such(tmp_path: Path) -> None:
    import asyncssh

    key = tmp_path / "id_ed25519"
    key.write_bytes(
        asyncssh.generate_private_key("ssh-ed25519").export_private_key(
            "pkcs8-pem", passphrase="secret"
        )
    )
    (tmp_path / "known").write_text("")

    async def hosts() -> Mapping[str, SshHost]:
        return {"h1": SshHost("h1", "127.0.0.1", port=9)}

    driver = SshDriver(hosts, client_key=key, known_hosts=tmp_path / "known")
    try:
        spec = InstanceSpec(id="i-1", app="a", version="v1", host="h1", zone="z1", artifact=key)
        with pytest.raises(SshDriverError, match="it must not need a passphrase"):
            driver.start(spec)
    finally:
        driver.close()
