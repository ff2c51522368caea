"""``-A module[:attribute]``: import the user's module and find its App."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from types import ModuleType

from amqpq.app import App
from amqpq.errors import ConfigError

__all__ = ["load_app"]

log = logging.getLogger("amqpq.worker")


def load_app(spec: str, *, cwd: str | None = None) -> App:
    """Import ``module`` (the current directory first on sys.path) and return its App.

    ``module:attr`` names the App; otherwise the module's ``app`` attribute, else
    the only App instance among its globals. It becomes the process's current App,
    the one ``@shared_task`` tasks send through.
    """
    return _find_app(spec, cwd=cwd).set_current()


def _find_app(spec: str, *, cwd: str | None) -> App:
    module_name, _, attribute = spec.partition(":")
    if not module_name or (":" in spec and not attribute):
        raise ConfigError(f"-A {spec!r}: expected module or module:attribute, e.g. -A tasks")
    directory = os.path.abspath(cwd or os.getcwd())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module = _import(module_name, spec)
    if attribute:
        value: object = module
        for part in attribute.split("."):
            if not hasattr(value, part):
                raise ConfigError(
                    f"-A {spec}: module {module_name!r} has no attribute {attribute!r}"
                )
            value = getattr(value, part)
        if not isinstance(value, App):
            raise ConfigError(f"-A {spec}: {attribute!r} is a {type(value).__name__}, not an App")
        return value
    named = getattr(module, "app", None)
    if isinstance(named, App):
        return named
    apps = {id(v): v for v in vars(module).values() if isinstance(v, App)}
    if len(apps) == 1:
        return next(iter(apps.values()))
    if not apps:
        raise ConfigError(f"-A {spec}: module {module_name!r} defines no App (app = App(...))")
    raise ConfigError(
        f"-A {spec}: module {module_name!r} has several Apps; name one: -A {module_name}:NAME"
    )


def _import(module_name: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"-A {spec}: no module named {module_name!r} (searched the current directory "
                "and the installed packages)"
            ) from exc
        raise ConfigError(_import_failure(module_name, exc)) from exc
    except ConfigError:
        raise  # the module's own App refused its configuration: that line says it all
    except Exception as exc:
        raise ConfigError(_import_failure(module_name, exc)) from exc


def _import_failure(module_name: str, exc: BaseException) -> str:
    """One line for a user's module that raised while imported: where, and what.

    The traceback runs through importlib's frames; the user needs the last frame of
    their own code (or the file and line of a syntax error), and gets the whole
    traceback at debug level.
    """
    log.debug("importing %r failed", module_name, exc_info=exc)
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}, line {exc.lineno})"
    else:
        frames = [
            frame
            for frame in traceback.extract_tb(exc.__traceback__)
            if "importlib" not in frame.filename and not frame.filename.startswith("<frozen")
        ]
        if frames:
            where = f" ({frames[-1].filename}, line {frames[-1].lineno})"
    detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    return (
        f"cannot import module {module_name!r}{where}: {type(exc).__name__}: {detail} "
        "(--loglevel debug shows the traceback)"
    )
