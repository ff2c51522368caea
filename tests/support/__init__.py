"""Helpers shared by the test folders, imported by package name and never copied.

- ``broker``: where the test broker is, and per-test vhosts through its management API.
- ``processes``: ``python -m amqpq worker|beat|...`` subprocesses with their logs.
- ``cli``: the ``amqpq`` command line, in-process (typer's runner) or as a subprocess.
- ``aio_clients``: a bare aio-pika client that sends task envelopes and reads queues.
- ``pika_clients``: bare pika helpers that write and read the wire format directly.
- ``fake_worker``: a bare pika consumer that answers as docs/protocol.md says a worker does.
- ``waiting``: polling until a condition holds.
- ``brokernode``: an extra RabbitMQ node for tests that stop, kill or restart a broker.
- ``cluster``: a local 3-node cluster from ``deploy/rabbitmq/cluster.sh``, its nodes and API.
- ``fleet``: a fleet under a fault: the tasks' run log, a sending thread, the fault's figures.
- ``netns``: a worker "host" of its own (network namespace, veth, blackhole partitions).
"""
