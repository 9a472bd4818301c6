"""The ssh driver against real sshd processes: three hosts (zones) on localhost ports."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ooda.auth import issue_token
from ooda.testing import (
    ServiceProcess,
    create_database,
    create_topics,
    delete_topics,
    free_port,
    kafka_env,
    unique,
)
from pipeline.driver import InstanceSpec
from pipeline.ssh_driver import SshDriver, SshDriverError, SshHost, ssh_host_from_json

pytestmark = pytest.mark.integration


def directory(fleet: Any, *more: SshHost) -> Any:
    hosts = {h.id: ssh_host_from_json(h.cmdb_item(), "nobody") for h in fleet.hosts}
    hosts.update({h.id: h for h in more})

    async def read() -> Mapping[str, SshHost]:
        return hosts

    return read


@pytest.fixture
def pyz(tmp_path: Path, artifacts: Any) -> Path:
    path = tmp_path / "good.pyz"
    path.write_bytes(artifacts.good)
    return path


@pytest.fixture
def make_driver(ssh_fleet: Any) -> Iterator[Any]:
    made: list[SshDriver] = []

    def make(known_hosts: Path | None = None) -> SshDriver:
        driver = SshDriver(
            directory(ssh_fleet),
            client_key=ssh_fleet.client_key,
            known_hosts=known_hosts or ssh_fleet.known_hosts,
            stop_timeout_s=3,
        )
        made.append(driver)
        return driver

    yield make
    ssh_fleet.kill_instances()
    for driver in made:
        driver.close()


def spec(instance_id: str, host: Any, pyz: Path) -> InstanceSpec:
    return InstanceSpec(
        id=instance_id,
        app="shop",
        version="v1",
        host=host.id,
        zone=host.zone,
        artifact=pyz,
        env={"WORKLOAD_CAPACITY_RPS": "50"},
    )


def wait_ready(endpoint: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(endpoint + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{endpoint} never became ready"
        time.sleep(0.05)


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if item)


def test_instances_run_on_three_hosts_with_the_artifact_uploaded_once_per_host(
    ssh_fleet: Any, make_driver: Any, pyz: Path
) -> None:
    driver = make_driver()
    specs = [spec(f"shop-{n}", ssh_fleet.hosts[n % 3], pyz) for n in range(6)]
    started = [driver.start(s) for s in specs]
    addresses = {h.id: h.address for h in ssh_fleet.hosts}
    for running, s in zip(started, specs, strict=True):
        assert (running.host, running.address) == (s.host, addresses[s.host])
        wait_ready(running.endpoint)
        assert driver.alive(s.id)
    assert driver.uploads == {h.id: 1 for h in ssh_fleet.hosts}
    for host in ssh_fleet.hosts:
        assert len(list((host.root / "artifacts").glob("*.pyz"))) == 1
        assert set(host.records()) == {s.id for s in specs if s.host == host.id}

    # Starting an id again adopts it; the workload's environment holds nothing of the SSH
    # session (nor of the pipeline's own environment).
    with socket.socket() as sock:  # it listens at its host's address only
        assert sock.connect_ex(("127.0.0.1", started[0].port)) != 0
    again = driver.start(specs[0])
    assert (again.pid, again.port) == (started[0].pid, started[0].port)
    env = environ_of(started[0].pid)
    assert set(env) == {
        "PATH",
        "LANG",
        "WORKLOAD_APP",
        "WORKLOAD_VERSION",
        "WORKLOAD_INSTANCE",
        "WORKLOAD_ZONE",
        "WORKLOAD_HOST",
        "WORKLOAD_CAPACITY_RPS",
    }
    assert not any(key.startswith("SSH_") for key in env)

    # After a restart of the pipeline, a new driver finds every instance again, and a new
    # instance on a host that has the artifact uploads nothing.
    restarted = make_driver()
    found = {r.id: r for r in restarted.running()}
    assert {i: (r.host, r.pid, r.port) for i, r in found.items()} == {
        r.id: (r.host, r.pid, r.port) for r in started
    }
    extra = restarted.start(spec("shop-extra", ssh_fleet.hosts[0], pyz))
    wait_ready(extra.endpoint)
    assert restarted.uploads == {}

    for s in [*specs, spec("shop-extra", ssh_fleet.hosts[0], pyz)]:
        restarted.stop(s.id)
    assert restarted.running() == []
    assert not driver.alive("shop-0")
    assert "stopped by the pipeline" in driver.describe_exit("shop-0")


def test_a_remote_instance_killed_with_sigkill_is_seen_dead_with_the_reason(
    ssh_fleet: Any, make_driver: Any, pyz: Path
) -> None:
    driver = make_driver()
    host = ssh_fleet.hosts[1]
    running = driver.start(spec("victim-1", host, pyz))
    wait_ready(running.endpoint)
    assert driver.alive("victim-1")

    os.kill(running.pid, signal.SIGKILL)

    deadline = time.monotonic() + 5
    while driver.alive("victim-1"):
        assert time.monotonic() < deadline, "the killed instance still looks alive"
        time.sleep(0.1)
    why = driver.describe_exit("victim-1")
    assert f"on host {host.id} was killed by SIGKILL (9)" in why, why
    assert "start on port" in why  # the tail of its log
    assert [r.id for r in driver.running()] == []
    driver.stop("victim-1")  # nothing to stop: no error


def test_a_host_whose_key_is_not_in_known_hosts_is_refused(
    ssh_fleet: Any, make_driver: Any, pyz: Path, tmp_path: Path
) -> None:
    stranger = ssh_fleet.hosts[2]
    driver = make_driver(ssh_fleet.known_hosts_without(tmp_path, stranger.id))
    with pytest.raises(SshDriverError, match="does not list; refusing it"):
        driver.start(spec("refused-1", stranger, pyz))
    assert "refused-1" not in stranger.records()
    # The hosts it knows still work.
    known = driver.start(spec("welcome-1", ssh_fleet.hosts[0], pyz))
    wait_ready(known.endpoint)


async def test_the_pipeline_deploys_over_ssh_and_replaces_an_instance_killed_on_its_host(
    kit: Any, ssh_fleet: Any, ssh_cmdb: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    ssh_cmdb.add_app(app, owner="shop-team", replicas=3)
    # Three starts over SSH one after the other, on a machine shared with other tests.
    ssh_cmdb.specs[app]["health_check"]["timeout_seconds"] = 20
    addresses = {h.id: h.address for h in ssh_fleet.hosts}
    ssh = {
        "driver": "ssh",
        "ssh_key_path": ssh_fleet.client_key,
        "ssh_known_hosts": ssh_fleet.known_hosts,
    }
    try:
        async with kit.pipeline(kit.infra, ssh_cmdb, tmp_path, **ssh) as svc:
            team = svc.auth("ci", "team:shop-team")
            good = await kit.upload(svc.client, team, kit.artifacts.good, "shop.pyz")
            created = await kit.request_deploy(svc.client, team, app, "v1", good, {"size": 3}, 3)
            deployed = await kit.wait_for_change(svc.client, created, kit.finished)
            assert deployed["state"] == "succeeded", deployed["reason"]
            before = (await svc.client.get(f"/v1/apps/{app}/instances")).json()
            assert sorted(i["zone"] for i in before) == ["z1", "z2", "z3"]
            async with httpx.AsyncClient(timeout=2) as http:
                for instance in before:
                    # Each answers at its own host's address, as the pipeline reports it.
                    assert urlsplit(instance["endpoint"]).hostname == addresses[instance["host"]]
                    assert (await http.get(instance["endpoint"] + "/readyz")).status_code == 200
            for host in ssh_fleet.hosts:
                assert (host.root / "artifacts" / f"{good}.pyz").exists()
            assert not (tmp_path / "hosts").exists()  # no local copy per host
            victim = before[0]
            victim_host = next(h for h in ssh_fleet.hosts if h.id == victim["host"])

            os.kill(int(victim_host.records()[victim["id"]]["pid"]), signal.SIGKILL)

            events = await kit.read_events(
                kit.infra,
                svc.prefix + "deploy-done",
                lambda found: any(
                    e.data.app == app and e.data.request_id.startswith(f"pipeline/{app}/heal-")
                    for e in found
                ),
                timeout=40,
            )
            (healed,) = [
                e.data
                for e in events
                if e.data.app == app and e.data.request_id.startswith(f"pipeline/{app}/heal-")
            ]
            assert (healed.kind, healed.outcome, healed.replicas) == ("scale", "succeeded", 3)
            ids = {i.id for i in healed.instances}
            assert victim["id"] not in ids and len(ids) == 3
            assert {i.status for i in healed.instances} == {"ready"}
            for ref in healed.instances:
                assert urlsplit(ref.endpoint).hostname == addresses[ref.host]
            (new,) = [i for i in healed.instances if i.id not in {b["id"] for b in before}]
            assert new.zone != victim["zone"]
            changes = (await svc.client.get("/v1/changes", params={"app": app})).json()["items"]
            (heal,) = [c for c in changes if c["request_id"] == healed.request_id]
            assert heal["cause"] == victim["id"]
            async with httpx.AsyncClient(timeout=2) as http:
                assert (await http.get(new.endpoint + "/readyz")).status_code == 200
    finally:
        ssh_fleet.kill_instances()


async def test_a_deploy_to_a_host_whose_key_is_unknown_fails_with_the_reason(
    kit: Any, ssh_fleet: Any, ssh_cmdb: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    ssh_cmdb.add_app(app, owner="shop-team", replicas=3)
    ssh_cmdb.specs[app]["health_check"]["timeout_seconds"] = 20
    stranger = ssh_fleet.hosts[2]
    ssh = {
        "driver": "ssh",
        "ssh_key_path": ssh_fleet.client_key,
        "ssh_known_hosts": ssh_fleet.known_hosts_without(tmp_path, stranger.id),
    }
    try:
        async with kit.pipeline(kit.infra, ssh_cmdb, tmp_path / "data", **ssh) as svc:
            team = svc.auth("ci", "team:shop-team")
            good = await kit.upload(svc.client, team, kit.artifacts.good, "shop.pyz")
            created = await kit.request_deploy(svc.client, team, app, "v1", good, {"size": 3}, 3)
            done = await kit.wait_for_change(svc.client, created, kit.finished, timeout=60)
            assert done["state"] in ("rolled_back", "failed")
            assert f"{stranger.id}" in done["reason"] and "refusing it" in done["reason"]
            assert (await svc.client.get(f"/v1/apps/{app}/instances")).json() == []
            for host in ssh_fleet.hosts:  # what started on the other hosts was stopped
                assert not any(i.startswith(created) for i in host.running())
            assert not any(i.startswith(created) for i in stranger.records())
    finally:
        ssh_fleet.kill_instances()


def test_an_unreachable_host_fails_at_once_until_it_is_tried_again(
    ssh_fleet: Any, make_driver: Any, pyz: Path
) -> None:
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.14", 0))
        silent.listen()
        dead = SshHost("ssh-silent", "127.0.0.14", silent.getsockname()[1], getpass.getuser())
        driver = SshDriver(
            directory(ssh_fleet, dead),
            client_key=ssh_fleet.client_key,
            known_hosts=ssh_fleet.known_hosts,
            connect_timeout_s=1,
            retry_connect_s=60,
        )
        try:
            began = time.monotonic()
            with pytest.raises(SshDriverError, match="cannot reach host ssh-silent"):
                driver.start(spec("lost-1", SimpleNamespace(id=dead.id, zone="z4"), pyz))
            assert time.monotonic() - began >= 1  # the connect timeout
            began = time.monotonic()
            with pytest.raises(SshDriverError, match="cannot reach host ssh-silent"):
                driver.start(spec("lost-2", SimpleNamespace(id=dead.id, zone="z4"), pyz))
            assert time.monotonic() - began < 0.5  # not waited for again
            # The other hosts still work, and listing them skips the silent one.
            found = driver.start(spec("fine-1", ssh_fleet.hosts[0], pyz))
            assert [r.id for r in driver.running()] == [found.id]
        finally:
            ssh_fleet.kill_instances()
            driver.close()


def supervisor_pids(host: Any) -> list[int]:
    """The `supervise.py <root> serve` processes of a host."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in words and str(host.root).encode() in words:
                found.append(int(entry.name))
    return found


def test_a_lost_supervisor_session_is_started_again_and_instances_keep_running(
    ssh_fleet: Any, make_driver: Any, pyz: Path
) -> None:
    driver = make_driver()
    host = ssh_fleet.hosts[0]
    running = driver.start(spec("resumed-1", host, pyz))
    wait_ready(running.endpoint)
    sessions = supervisor_pids(host)  # this driver's (and any of a closed one, ending)
    assert sessions

    for pid in sessions:
        os.kill(pid, signal.SIGKILL)

    time.sleep(0.6)  # past the age of the last listing
    assert driver.alive("resumed-1")
    assert driver.start(spec("resumed-1", host, pyz)).pid == running.pid
    assert supervisor_pids(host) and not set(supervisor_pids(host)) & set(sessions)
    wait_ready(running.endpoint)


def test_the_folders_of_instances_that_ended_a_week_ago_go_at_the_next_start(
    ssh_fleet: Any, make_driver: Any, pyz: Path
) -> None:
    driver = make_driver()
    host = ssh_fleet.hosts[1]
    folders = host.root / "instances"
    for instance_id in ("old-1", "recent-1"):
        driver.start(spec(instance_id, host, pyz))
        driver.stop(instance_id)
    deadline = time.monotonic() + 5
    while not all((folders / i / "exit.json").exists() for i in ("old-1", "recent-1")):
        assert time.monotonic() < deadline, "the monitors recorded no exit"
        time.sleep(0.05)
    week_ago = time.time() - 8 * 86400
    os.utime(folders / "old-1" / "exit.json", (week_ago, week_ago))

    driver.start(spec("new-1", host, pyz))

    assert not (folders / "old-1").exists()
    assert (folders / "recent-1" / "out.log").exists()


async def test_a_pipeline_killed_mid_rollout_over_ssh_adopts_its_instances_and_finishes_once(
    kit: Any, ssh_fleet: Any, ssh_cmdb: Any, tmp_path: Path
) -> None:
    app = unique("shop")
    ssh_cmdb.add_app(app, owner="shop-team")
    ssh_cmdb.specs[app]["health_check"]["timeout_seconds"] = 20
    prefix = unique("crash").replace("-", "") + "."
    await create_topics(kit.infra, prefix)
    port = free_port()
    service = ServiceProcess(
        "pipeline",
        {
            "PATH": os.environ["PATH"],
            "PIPELINE_DATABASE_URL": await create_database(kit.infra, "pipeline"),
            "PIPELINE_PORT": str(port),
            "PIPELINE_CMDB_URL": ssh_cmdb.url,
            "PIPELINE_DATA_DIR": str(tmp_path / "data"),
            "PIPELINE_EXECUTOR_POLL_SECONDS": "0.1",
            "PIPELINE_OUTBOX_POLL_SECONDS": "0.2",
            "PIPELINE_DRIVER": "ssh",
            "PIPELINE_SSH_KEY_PATH": str(ssh_fleet.client_key),
            "PIPELINE_SSH_KNOWN_HOSTS": str(ssh_fleet.known_hosts),
            **kafka_env(kit.infra.kafka("pipeline")),
            "OODA_AUTH_SECRET": kit.infra.auth_secret,
            "OODA_TOPIC_PREFIX": prefix,
        },
        port,
        tmp_path / "pipeline.log",
    )
    token = issue_token(kit.infra.auth_secret, "ci", ["release"], audience="pipeline")
    headers = {"Authorization": f"Bearer {token}"}

    def running_on_hosts() -> set[str]:
        return {i for host in ssh_fleet.hosts for i in host.running() if i.startswith("chg-")}

    try:
        service.start()
        await service.wait_ready()
        async with httpx.AsyncClient(base_url=service.url, trust_env=False) as client:
            slow = await kit.upload(
                client, headers, kit.artifacts.slow, "shop-slow.pyz", "shop-team"
            )
            change_id = await kit.request_deploy(client, headers, app, "v1", slow, {"size": 1}, 6)
            await kit.wait_for_change(
                client,
                change_id,
                lambda c: c["rollout"] is not None and c["rollout"]["started"] >= 3,
                timeout=60,
            )
        service.kill()
        survivors = {i for i in running_on_hosts() if i.startswith(change_id)}
        assert 2 <= len(survivors) <= 3  # instances outlive the pipeline; it adopts them

        service.start()
        await service.wait_ready()
        async with httpx.AsyncClient(base_url=service.url, trust_env=False) as client:
            done = await kit.wait_for_change(client, change_id, kit.finished, timeout=60)
            assert done["state"] == "succeeded", done["reason"]
            live = (await client.get(f"/v1/apps/{app}/instances")).json()
        ids = {i["id"] for i in live}
        assert len(ids) == 6 and survivors <= ids
        assert {i for i in running_on_hosts() if i.startswith(change_id)} == ids
        events = await kit.read_events(
            kit.infra,
            prefix + "deploy-done",
            lambda found: any(e.data.app == app for e in found),
            settle=1.5,
        )
        (final,) = [e.data for e in events if e.data.app == app]
        assert final.change_id == change_id and {i.id for i in final.instances} == ids
    finally:
        service.stop()
        ssh_fleet.kill_instances()
        await delete_topics(kit.infra, prefix)
