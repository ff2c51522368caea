"""``amqpq dashboard``: the web dashboard over the events stream (docs/dashboard.md)."""
