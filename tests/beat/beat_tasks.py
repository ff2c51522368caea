"""An App for ``amqpq beat -A beat_tasks``: with it, arguments are checked before sending."""

from amqpq import App

app = App("bt")


@app.task
def tick(a: int, b: str, three: int = 0) -> str:
    return f"{a} {b} {three}"


@app.task
def nightly() -> None:
    return None
