"""Result stores: every task's state and result kept by task id, readable from any process.

:mod:`~amqpq.results.base` holds the model (:class:`StoredResult`) and the interface
(:class:`ResultStore`, sync and async twins); (:mod:`~amqpq.results.opening`) :func:`open_store` builds the store a URL
names: ``redis://`` (:mod:`~amqpq.results.redis_store`), ``postgresql://``
(:mod:`~amqpq.results.postgres_store`) or ``memory://`` (:mod:`~amqpq.results.memory`,
for ``amqpq.testing``). The client libraries (redis-py, psycopg) are imported only here,
and only when their store is opened.
"""

from amqpq.results.base import (
    DEFAULT_RESULT_EXPIRES,
    ResultStore,
    ResultStoreError,
    StoredResult,
)
from amqpq.results.opening import open_store

__all__ = [
    "DEFAULT_RESULT_EXPIRES",
    "ResultStore",
    "ResultStoreError",
    "StoredResult",
    "open_store",
]
