"""The ceiling: a bare aio-pika consumer, manual ack after the (empty) work.

``python raw_worker.py URL QUEUE --prefetch N [--rpc]``. With ``--rpc`` it answers
each message on its ``reply_to`` (transient, on a confirming channel, as amqpq's
worker does) and acks once the reply is confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time

import aio_pika


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--rpc", action="store_true")
    parser.add_argument("--procs", type=int, default=1, help="N consumer processes")
    args = parser.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    connection = await aio_pika.connect(
        args.url, client_properties={"connection_name": "bench raw worker"}
    )
    channel = await connection.channel(publisher_confirms=args.rpc)
    await channel.set_qos(prefetch_count=args.prefetch)
    queue = await channel.declare_queue(args.queue, durable=True)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if args.rpc and message.reply_to:
            await channel.default_exchange.publish(
                aio_pika.Message(b'{"result":3}', correlation_id=message.correlation_id),
                routing_key=message.reply_to,
                mandatory=False,
            )
        await message.ack()

    await queue.consume(on_message)
    await stop.wait()
    await connection.close()


def _supervise(procs: int) -> None:
    """N single consumers (``--procs N``): start them, stop them on SIGTERM/SIGINT."""
    argv = [sys.executable, *sys.argv]
    argv[argv.index("--procs") + 1] = "1"
    children = [subprocess.Popen(argv) for _ in range(procs)]
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.1)
    for child in children:
        child.terminate()
    for child in children:
        child.wait()


if __name__ == "__main__":
    procs = int(sys.argv[sys.argv.index("--procs") + 1]) if "--procs" in sys.argv else 1
    if procs > 1:
        _supervise(procs)
    else:
        asyncio.run(main())
