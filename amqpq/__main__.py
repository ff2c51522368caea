"""``python -m amqpq`` runs the command line."""

from amqpq.cli import main

main()
