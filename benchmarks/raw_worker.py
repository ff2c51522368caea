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

import aio_pika


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--rpc", action="store_true")
    parser.add_argument("--procs", type=int, default=1, help="N consumer processes")
    args = parser.parse_args()
    if args.procs > 1:
        await _supervise(args.procs)
        return

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    connection = await aio_pika.connect(args.url, client_properties={"connection_name": "bench raw worker"})
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


async def _supervise(procs: int) -> None:
    argv = [sys.executable, *[a for a in sys.argv if a]]
    index = argv.index("--procs")
    argv[index + 1] = "1"
    children = [subprocess.Popen(argv) for _ in range(procs)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for child in children:
        child.terminate()
    for child in children:
        child.wait()


if __name__ == "__main__":
    asyncio.run(main())
