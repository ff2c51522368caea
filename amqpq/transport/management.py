"""A small synchronous client of RabbitMQ's management HTTP API, on httpx.

httpx errors and refusals become :class:`~amqpq.errors.ManagementAPIError` here
with a message a user can act on; nothing above this module sees httpx. Vhost
and object names are percent-encoded (the default vhost ``/`` is ``%2F``).

Add endpoints as methods calling :meth:`ManagementClient.request`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from amqpq.errors import ManagementAPIError
from amqpq.settings import Settings
from amqpq.topology.plan import BrokerSnapshot, snapshot_from_management

__all__ = ["ManagementClient"]


class _NotFound(ManagementAPIError):
    """A 404: the vhost, queue or connection does not exist."""


def _q(name: str) -> str:
    return quote(name, safe="")


class ManagementClient:
    """``with ManagementClient.from_settings(settings) as api: api.list_queues("/")``."""

    def __init__(
        self,
        base_url: str,
        credentials: tuple[str, str],
        *,
        timeout: float = 10.0,
        verify: bool | str = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = credentials[0]
        self._client = httpx.Client(
            base_url=f"{self.base_url}/api",
            auth=credentials,
            timeout=timeout,
            verify=verify,
            headers={"content-type": "application/json"},
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float | None = None) -> Self:
        verify: bool | str = settings.tls_verify
        if settings.tls_verify and settings.tls_ca_file:
            verify = str(settings.tls_ca_file)
        return cls(
            settings.management_base_url,
            settings.management_credentials,
            timeout=timeout if timeout is not None else settings.connect_timeout,
            verify=verify,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the one place requests are made and errors mapped -------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        not_found: str | None = None,
    ) -> Any:
        """Send one request; the decoded JSON answer (None when the body is empty).

        ``not_found`` is the message to raise on 404 (e.g. "queue 'x' does not exist").
        """
        try:
            response = self._client.request(method, path, json=json, params=params, headers=headers)
        except httpx.ConnectError as exc:
            raise ManagementAPIError(
                f"management API at {self.base_url} did not answer: {_reason(exc)} "
                "— is the rabbitmq_management plugin enabled?"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ManagementAPIError(
                f"management API at {self.base_url} did not answer in time ({_reason(exc)})"
            ) from exc
        except httpx.HTTPError as exc:
            raise ManagementAPIError(
                f"management API at {self.base_url} failed: {_reason(exc)}"
            ) from exc
        status = response.status_code
        if status == 401:
            raise ManagementAPIError(
                f"management API at {self.base_url} refused the credentials for user "
                f"{self.username!r}"
            )
        if status == 403:
            raise ManagementAPIError(
                f"management API at {self.base_url}: user {self.username!r} may not "
                f"{method} {path} (needs the management or administrator tag and vhost access)"
            )
        if status == 404:
            raise _NotFound(
                f"management API at {self.base_url}: {path} not found"
                if not_found is None
                else not_found
            )
        if status >= 400:
            raise ManagementAPIError(
                f"management API at {self.base_url} answered {status} to {method} {path}: "
                f"{_error_reason(response)}"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ManagementAPIError(
                f"management API at {self.base_url} sent a body that is not JSON for {path} "
                "(is this URL the management API?)"
            ) from exc

    # -- broker ---------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/overview")
        return result

    # -- vhosts and permissions -----------------------------------------------------------

    def vhost_exists(self, vhost: str) -> bool:
        try:
            self.request("GET", f"/vhosts/{_q(vhost)}")
        except _NotFound:
            return False
        return True

    def create_vhost(self, vhost: str) -> None:
        self.request("PUT", f"/vhosts/{_q(vhost)}")

    def delete_vhost(self, vhost: str) -> None:
        self.request("DELETE", f"/vhosts/{_q(vhost)}", not_found=self._no_vhost(vhost))

    def set_permissions(
        self,
        vhost: str,
        user: str,
        configure: str = ".*",
        write: str = ".*",
        read: str = ".*",
    ) -> None:
        self.request(
            "PUT",
            f"/permissions/{_q(vhost)}/{_q(user)}",
            json={"configure": configure, "write": write, "read": read},
            not_found=self._no_vhost(vhost),
        )

    # -- objects of one vhost -------------------------------------------------------------

    def list_exchanges(self, vhost: str) -> list[dict[str, Any]]:
        return self._list(f"/exchanges/{_q(vhost)}", vhost)

    def list_queues(self, vhost: str) -> list[dict[str, Any]]:
        return self._list(f"/queues/{_q(vhost)}", vhost)

    def list_bindings(self, vhost: str) -> list[dict[str, Any]]:
        return self._list(f"/bindings/{_q(vhost)}", vhost)

    def get_queue(self, vhost: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET",
            f"/queues/{_q(vhost)}/{_q(name)}",
            not_found=f"queue {name!r} does not exist in vhost {vhost!r}",
        )
        return result

    def snapshot(self, vhost: str) -> BrokerSnapshot:
        """Exchanges, queues and bindings of the vhost, for :func:`plan_topology`."""
        if not self.vhost_exists(vhost):
            # Everything is still to be created; apply will say the vhost is missing.
            return BrokerSnapshot(vhost=vhost)
        return snapshot_from_management(
            vhost,
            exchanges=self.list_exchanges(vhost),
            queues=self.list_queues(vhost),
            bindings=self.list_bindings(vhost),
        )

    # -- definitions ----------------------------------------------------------------------

    def import_definitions(self, vhost: str, definitions: dict[str, Any]) -> None:
        """POST vhost-less definitions (exchanges, queues, bindings) into one vhost."""
        self.request(
            "POST",
            f"/definitions/{_q(vhost)}",
            json=definitions,
            not_found=self._no_vhost(vhost),
        )

    def export_definitions(self, vhost: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", f"/definitions/{_q(vhost)}", not_found=self._no_vhost(vhost)
        )
        return result

    # -- connections ----------------------------------------------------------------------

    def list_connections(self, vhost: str | None = None) -> list[dict[str, Any]]:
        if vhost is None:
            return self._list("/connections", None)
        return self._list(f"/vhosts/{_q(vhost)}/connections", vhost)

    def list_consumers(self, vhost: str) -> list[dict[str, Any]]:
        """Every consumer of the vhost, with its queue, tag and ``channel_details``."""
        return self._list(f"/consumers/{_q(vhost)}", vhost)

    def close_connection(self, name: str, reason: str = "closed by amqpq") -> None:
        # RabbitMQ passes the X-Reason header on to the client as the close reason.
        self.request(
            "DELETE",
            f"/connections/{_q(name)}",
            headers={"X-Reason": reason},
            not_found=f"connection {name!r} does not exist (closed already?)",
        )

    # -- helpers --------------------------------------------------------------------------

    def _list(self, path: str, vhost: str | None) -> list[dict[str, Any]]:
        result = self.request(
            "GET", path, not_found=self._no_vhost(vhost) if vhost is not None else None
        )
        return list(result or [])

    @staticmethod
    def _no_vhost(vhost: str) -> str:
        return f"vhost {vhost!r} does not exist on the broker"


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host"
    return text


def _error_reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("reason") or body.get("error") or body)
    return str(body)
