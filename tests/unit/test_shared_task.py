"""``@shared_task``: declared without an App, registered in every App, sent through the
process's App. Each case runs in a fresh interpreter: the Apps of a process are the point."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_shared_task_runs_through_the_app_created_after_it_without_connecting() -> None:
    done = _python(
        """
        import sys
        from amqpq import App, shared_task

        @shared_task
        def multiply(x: int, y: int) -> int:
            return x * y

        app = App("proj")  # created after the task was declared
        assert app.registry.get("__main__.multiply") is multiply
        assert "pika" not in sys.modules and "aio_pika" not in sys.modules  # nothing connected

        from amqpq.testing import TestBroker
        with TestBroker(app, eager=True):
            print(multiply.delay(6, 7).get())
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "42\n"


def test_sending_a_shared_task_without_an_app_says_to_create_one() -> None:
    done = _python(
        """
        from amqpq import ConfigError, shared_task

        @shared_task(name="billing.charge")
        def charge(cents: int) -> None: ...

        try:
            charge.delay(100)
        except ConfigError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("shared task billing.charge: no App was created in this process")


def test_with_several_apps_the_current_one_is_chosen_or_the_send_refused() -> None:
    done = _python(
        """
        from amqpq import App, ConfigError, current_app, shared_task
        from amqpq.testing import TestBroker

        first = App("first")

        @shared_task(name="shared.double")
        def double(x: int) -> int:
            return 2 * x

        second = App("second")
        assert "shared.double" in first.registry and "shared.double" in second.registry
        try:
            double.delay(1)
        except ConfigError as exc:
            print(exc)
        second.set_current()
        assert current_app() is second
        with TestBroker(second, eager=True):
            print(double.delay(21).get())
        """
    )
    assert done.returncode == 0, done.stderr
    refused, result = done.stdout.splitlines()
    assert refused == (
        "shared task shared.double: this process created 2 Apps (first, second); "
        "call app.set_current() on the one shared tasks send through"
    )
    assert result == "42"
