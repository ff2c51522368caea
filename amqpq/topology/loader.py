"""Reading ``amqpq.yaml``: YAML with line numbers, ``${ENV}`` interpolation, validation, checks.

Every problem becomes one line ``FILE:LINE: field.path: what was expected``.
The YAML is composed into nodes first (which keep their line numbers), so a
pydantic error location or a check's field path can be traced back to the line
that holds it.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from amqpq.errors import TopologyError
from amqpq.topology.checks import Loc, Problem, check_topology
from amqpq.topology.infra import infrastructure_problems
from amqpq.topology.models import Topology

if TYPE_CHECKING:
    import yaml

__all__ = [
    "DEFAULT_SOURCE",
    "find_topology_file",
    "interpolate",
    "load_topology",
    "load_topology_text",
    "resolve_topology",
    "topology_from_data",
]

# ${NAME} or ${NAME:-default}; $${ escapes a literal "${".
_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_UNION_MEMBER_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


class _MissingVariable(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def interpolate(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}``; ``$${`` stays a literal ``${``.

    Raises :class:`KeyError` naming the first variable that is unset and has no default.
    """
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        # As in shells, ":-" also stands in for a variable that is set but empty.
        if value is None or (value == "" and default is not None):
            if default is None:
                raise _MissingVariable(name)
            return default
        return value

    try:
        return _PLACEHOLDER.sub(replace, text)
    except _MissingVariable as exc:
        raise KeyError(exc.name) from None


class _Located:
    """Line numbers (1-based) of every field path in the composed YAML document."""

    def __init__(self) -> None:
        self.value_lines: dict[Loc, int] = {}
        self.key_lines: dict[Loc, int] = {}

    def line_for(self, loc: Loc, *, key: bool = False) -> int:
        """The line of the field, else of its closest written ancestor."""
        if key and loc in self.key_lines:
            return self.key_lines[loc]
        for end in range(len(loc), -1, -1):
            line = self.value_lines.get(loc[:end])
            if line is not None:
                return line
        return 1


def _walk(
    node: yaml.Node, loc: Loc, key_node: yaml.Node | None = None
) -> Iterator[tuple[Loc, yaml.Node, yaml.Node | None]]:
    """Yield (path, value node, key node) for the node and everything under it."""
    import yaml  # loaded already: see load_topology_text

    yield loc, node, key_node
    if isinstance(node, yaml.MappingNode):
        for child_key, child in node.value:
            key = child_key.value if isinstance(child_key, yaml.ScalarNode) else str(child_key)
            yield from _walk(child, (*loc, key), child_key)
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            yield from _walk(child, (*loc, index))


def _prepare(
    root: yaml.Node, loader: yaml.SafeLoader, environ: Mapping[str, str] | None
) -> tuple[_Located, list[Problem]]:
    """Record line numbers, find duplicate keys, and interpolate ``${ENV}`` in scalar values."""
    import yaml

    located = _Located()
    problems: list[Problem] = []
    seen_nodes: set[int] = set()
    for loc, node, key_node in _walk(root, ()):
        located.value_lines[loc] = node.start_mark.line + 1
        if key_node is not None:
            located.key_lines[loc] = key_node.start_mark.line + 1
        if id(node) in seen_nodes:  # a YAML alias: interpolated already
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
            for key in {k for k in keys if keys.count(k) > 1}:
                problems.append(Problem((*loc, key), "key written more than once"))
        elif isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
            if "${" not in node.value:
                continue
            try:
                value = interpolate(node.value, environ)
            except KeyError as exc:
                problems.append(
                    Problem(
                        loc,
                        f"environment variable {exc.args[0]} is not set "
                        f"(set it, or write ${{{exc.args[0]}:-default}})",
                    )
                )
                continue
            if node.style is None and _PLACEHOLDER.fullmatch(node.value):
                # An unquoted value that is just a placeholder is typed as if its value
                # had been written there: `max_length: ${QUEUE_MAX:-1000}` is a number.
                resolve = typing.cast(Callable[..., str], loader.resolve)  # untyped in stubs
                node.tag = resolve(yaml.ScalarNode, value, (True, False))
            node.value = value
    return located, problems


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping found at ``loc`` (for unknown-key hints)."""
    annotation: Any = Topology
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) in (tuple, list, dict):
            annotation = typing.get_args(annotation)[-1 if isinstance(part, str) else 0]
        else:
            return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _unwrap(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else members[0]
    return annotation


def _file_keys(model: type[BaseModel]) -> list[str]:
    return [name for name in model.model_fields if name != "managed_by_amqpq"]


def _describe_error(error: ErrorDetails) -> str:
    kind = error["type"]
    message = error["msg"]
    loc = tuple(error["loc"])
    if kind == "missing":
        if len(loc) >= 2 and loc[0] == "routes" and loc[-1] == "exchange":
            return "required: a route needs an exchange (the default exchange is not supported)"
        return "required field is missing"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        if model is None:
            return "unknown key"
        keys = _file_keys(model)
        hint = difflib.get_close_matches(str(loc[-1]), keys, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"unknown key{suggestion}; expected one of: {', '.join(keys)}"
    if message.startswith("Value error, "):
        return message.removeprefix("Value error, ")
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
    elif message.startswith("String should "):
        message = "expected a string that should " + message.removeprefix("String should ")
    else:
        message = message[:1].lower() + message[1:]
    value = error.get("input")
    if isinstance(value, str | int | float | bool | None) and not isinstance(value, dict):
        message += f", got {value!r}"
    return message


def _problems_from_validation(exc: ValidationError, located: _Located) -> list[Problem]:
    problems: list[Problem] = []
    by_loc: dict[Loc, list[str]] = {}
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        # Union members add a tag to the location ("str", "int", ...): fold them together.
        while loc and isinstance(loc[-1], str) and loc[-1] in _UNION_MEMBER_TAGS:
            if loc in located.value_lines:
                break
            loc = loc[:-1]
        message = _describe_error(error)
        if loc in by_loc:
            by_loc[loc].append(message)
            continue
        by_loc[loc] = [message]
        problems.append(Problem(loc, message))
    merged: list[Problem] = []
    for problem in problems:
        messages = by_loc[problem.loc]
        if len(messages) > 1:
            # e.g. a header value that is neither string, number nor boolean
            wanted = [
                m.split(", got ")[0].removeprefix("expected ").removeprefix("a valid ")
                for m in messages
            ]
            got = messages[0].rsplit(", got ", 1)
            tail = f", got {got[1]}" if len(got) == 2 else ""
            choice = ", ".join(wanted[:-1]) + f" or {wanted[-1]}"
            merged.append(Problem(problem.loc, f"expected a {choice}{tail}"))
        else:
            merged.append(problem)
    return merged


def _raise(source: str, located: _Located | None, problems: list[Problem]) -> typing.NoReturn:
    placed: list[tuple[int, str]] = []
    for problem in problems:
        if located is None:
            placed.append((0, f"{source}: {problem.describe()}"))
            continue
        line = located.line_for(problem.loc, key=problem.message.startswith("unknown key"))
        placed.append((line, f"{source}:{line}: {problem.describe()}"))
    lines = [text for _, text in sorted(placed, key=lambda item: item[0])]
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    raise TopologyError(lines[0] + more, lines)


def topology_from_data(
    data: Any, source: str = "<topology>", *, _located: _Located | None = None
) -> Topology:
    """Validate and check already-parsed data (a dict as YAML would give)."""
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"{type(data).__name__}"
        _raise(
            source,
            _located,
            [
                Problem(
                    (),
                    "expected a mapping with exchanges:, queues:, routes:, schedules:, "
                    f"infrastructure:; got {kind}",
                )
            ],
        )
    try:
        topology = Topology.model_validate(data, context={"from_file": True})
    except ValidationError as exc:
        _raise(source, _located, _problems_from_validation(exc, _located or _Located()))
    problems = check_topology(topology) + infrastructure_problems(topology)
    if problems:
        _raise(source, _located, problems)
    return topology


def load_topology_text(
    text: str, source: str = "<string>", environ: Mapping[str, str] | None = None
) -> Topology:
    """Parse, interpolate, validate and check a topology given as YAML text."""
    # Imported here, not with the module: an App given its topology in code (and the
    # worker it runs in) never reads YAML, and PyYAML is slow to import.
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TopologyError(f"{where}: invalid YAML: {detail}") from None
    finally:
        loader.dispose()
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag.endswith(":null")):
        raise TopologyError(
            f"{source}: the file is empty; expected exchanges:, queues: and routes: "
            "(see docs/topology.md)"
        )
    located, problems = _prepare(root, loader, environ)
    if problems:
        _raise(source, located, problems)
    try:
        data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise TopologyError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return topology_from_data(data, source, _located=located)


def load_topology(path: Path, environ: Mapping[str, str] | None = None) -> Topology:
    """Read and validate a topology file; :class:`TopologyError` lists every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TopologyError(
            f"{path}: topology file not found (pass -f FILE, set AMQPQ_TOPOLOGY, "
            "or create ./amqpq.yaml)"
        ) from None
    except IsADirectoryError:
        raise TopologyError(f"{path}: is a directory; expected a YAML file") from None
    except UnicodeDecodeError as exc:
        raise TopologyError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    return load_topology_text(text, str(path), environ)


# Used when no file is named and ./amqpq.yaml does not exist, so `App("tasks")`
# and every command work out of the box: one direct exchange, one quorum queue,
# every task routed there.
DEFAULT_TOPOLOGY: dict[str, Any] = {
    "exchanges": [{"name": "amqpq.tasks", "type": "direct"}],
    "queues": [
        {
            "name": "default",
            "type": "quorum",
            "bindings": [{"exchange": "amqpq.tasks", "routing_key": "default"}],
        }
    ],
    "routes": {"*": {"exchange": "amqpq.tasks", "routing_key": "default"}},
}
DEFAULT_SOURCE = "<built-in default topology>"


def resolve_topology(
    path: Path | None, default_path: Path = Path("amqpq.yaml"), *, beside: Path | None = None
) -> tuple[str, Topology]:
    """The topology to use and where it came from.

    A named file (``-f``, ``topology=`` or ``AMQPQ_TOPOLOGY``) must exist. Without
    one, ``amqpq.yaml`` in the folder ``beside`` (the App's module's folder) is read
    when present, else ``./amqpq.yaml``, else the built-in default is used
    (its source is :data:`DEFAULT_SOURCE`).
    """
    found = path or find_topology_file(default_path, beside=beside)
    if found is not None:
        return str(found), load_topology(found)
    return DEFAULT_SOURCE, topology_from_data(DEFAULT_TOPOLOGY, DEFAULT_SOURCE)


def find_topology_file(
    default_path: Path = Path("amqpq.yaml"), *, beside: Path | None = None
) -> Path | None:
    """``beside/amqpq.yaml`` when it exists, else ``default_path`` when it exists, else None.

    Beside the App's module first: a script run from another folder that imports the
    project's tasks must use the project's file, not whatever the current folder holds.
    """
    if beside is not None:
        candidate = beside / default_path.name
        if candidate.is_file():
            return candidate
    return default_path if default_path.exists() else None
