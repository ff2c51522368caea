"""Both of the broker's doors: commands that read the management API check AMQP too.

``topology plan`` and ``status`` learn everything from the management API, but
``apply``, the producers and the workers need AMQP. A broker whose HTTP port answers
while its AMQP port does not (a firewall, a listener bound elsewhere, a wrong port in
the URL) must not look healthy.
"""

from __future__ import annotations

from amqpq.errors import BrokerError, BrokerUnreachableError
from amqpq.settings import Settings

__all__ = ["check_amqp"]


def check_amqp(settings: Settings) -> None:
    """Open and close one AMQP connection; :class:`BrokerUnreachableError` naming AMQP."""
    from amqpq.transport.queues import QueueSession

    try:
        with QueueSession(settings, "cli"):
            pass
    except BrokerError as exc:
        raise BrokerUnreachableError(
            f"{exc} (the management API at {settings.management_base_url} answers, but "
            "producers, workers and `topology apply` need AMQP)"
        ) from exc
