"""amqpq: an AMQP-native task queue for Python on RabbitMQ."""

from __future__ import annotations

__version__ = "0.1.0"
