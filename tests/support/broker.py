"""Where the test broker is, and vhosts of the tests' own made through its management API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from urllib.parse import quote

import httpx

BROKER_HOST = os.environ.get("AMQPQ_TEST_HOST", "127.0.0.1")
MANAGEMENT = f"http://{BROKER_HOST}:15672/api"
AUTH = ("guest", "guest")


def management_client() -> httpx.Client:
    """A plain HTTP client on the management API (test-side, independent of amqpq's own)."""
    return httpx.Client(base_url=MANAGEMENT, auth=AUTH, timeout=10.0)


def create_vhost(
    management: httpx.Client, name: str, *, default_queue_type: str | None = None
) -> str:
    """Create ``name`` with full permissions for guest; the AMQP URL of it.

    ``default_queue_type`` ("quorum") makes it a vhost where a queue declared without
    ``x-queue-type`` gets that type, as RabbitMQ 4.x deployments and Amazon MQ do. The
    management API of 3.10 ignores that field, so such a vhost is made with
    ``rabbitmqctl add_vhost --default-queue-type`` (the broker's own node).
    """
    quoted = quote(name, safe="")
    if default_queue_type is None:
        management.put(f"/vhosts/{quoted}").raise_for_status()
    else:
        subprocess.run(
            ["rabbitmqctl", "-q", "add_vhost", name, "--default-queue-type", default_queue_type],
            check=True,
            capture_output=True,
            timeout=60,
        )
    management.put(
        f"/permissions/{quoted}/guest",
        json={"configure": ".*", "write": ".*", "read": ".*"},
    ).raise_for_status()
    return amqp_url(name)


def delete_vhost(management: httpx.Client, name: str) -> None:
    management.delete(f"/vhosts/{quote(name, safe='')}")


def amqp_url(vhost: str) -> str:
    return f"amqp://guest:guest@{BROKER_HOST}:5672/{quote(vhost, safe='')}"


def close_connections_named(
    management: httpx.Client, vhost: str, name: str, reason: str = "closed by a test"
) -> int:
    """Close (as an operator would, through the management API) the vhost's connections
    whose client-given name starts with ``name``; how many were closed."""
    response = management.get(f"/vhosts/{quote(vhost, safe='')}/connections")
    response.raise_for_status()
    closed = 0
    for connection in response.json():
        given = connection.get("user_provided_name") or connection.get("client_properties", {}).get(
            "connection_name", ""
        )
        if given.startswith(name):
            management.delete(
                f"/connections/{quote(connection['name'], safe='')}",
                headers={"X-Reason": reason},
            ).raise_for_status()
            closed += 1
    return closed


async def connections_named(
    management: httpx.Client, vhost: str, name: str, timeout: float = 10.0
) -> list[str]:
    """The broker's names of the connections of ``vhost`` whose client called itself
    ``name``, once the management API lists at least one."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "connection not listed by the management API"
        response = await asyncio.to_thread(
            management.get, f"/vhosts/{quote(vhost, safe='')}/connections"
        )
        listed = [
            c["name"]
            for c in response.json()
            if c.get("client_properties", {}).get("connection_name") == name
        ]
        if listed:
            return listed
        await asyncio.sleep(0.05)
