"""Loading amqpq.yaml: one line per problem with file, line, field path and expectation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from amqpq.errors import ConfigError, TopologyError
from amqpq.topology.loader import interpolate, load_topology, load_topology_text
from amqpq.topology.models import Topology

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "amqpq.yaml"


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        load_topology(path, environ or {})
    for line in caught.value.problems:
        assert "\n" not in line
    return caught.value.problems


def test_the_spec_example_loads() -> None:
    topology = load_topology(EXAMPLE, {})
    assert [x.name for x in topology.exchanges] == ["tasks", "events", "broadcast", "reports"]
    assert topology.queue("default") is not None
    assert topology.queue("default").type == "quorum"  # type: ignore[union-attr]
    assert topology.queue("pdf").declare_arguments == {  # type: ignore[union-attr]
        "x-max-length": 100000,
        "x-queue-type": "classic",
    }
    assert topology.schedules["daily-report"].timezone == "Asia/Seoul"


def test_a_wrong_value_is_reported_with_its_line_and_path(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml(
        """
        exchanges:
          - {name: tasks, type: direct}
          - name: events
            type: topics
        """
    )
    assert problems_of(path) == [
        f"{path}:4: exchanges[1].type: expected 'direct', 'topic', 'fanout' or 'headers', "
        "got 'topics'"
    ]


def test_an_unknown_key_names_the_keys_expected_and_suggests_one(
    write_yaml: Callable[..., Path],
) -> None:
    path = write_yaml(
        """
        queues:
          - name: jobs
            bindngs: []
        """
    )
    (problem,) = problems_of(path)
    assert problem.startswith(
        f"{path}:3: queues[0].bindngs: unknown key (did you mean 'bindings'?)"
    )
    assert "expected one of: name, type, durable" in problem
    assert "managed_by_amqpq" not in problem


def test_every_problem_is_reported_at_once_in_line_order(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml(
        """
        exchanges:
          - {name: tasks, type: direct}
        queues:
          - name: jobs
            bindings: [{exchange: taks, routing_key: jobs}]
          - name: jobs
        routes:
          "*": {exchange: tasks, routing_key: nowhere}
        """
    )
    assert problems_of(path) == [
        f"{path}:5: queues[0].bindings[0].exchange: exchange 'taks' is not declared under "
        "exchanges: (built-in amq.* exchanges may be used without declaring them)",
        f"{path}:6: queues[1].name: queue 'jobs' is declared twice",
        f"{path}:8: routes[\"*\"]: a message to exchange 'tasks' with routing key 'nowhere' "
        "reaches no queue; bind a queue that matches it",
    ]


def test_a_route_without_exchange_is_refused(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml(
        """
        routes:
          tasks.add: {routing_key: default}
        """
    )
    assert problems_of(path) == [
        f'{path}:2: routes["tasks.add"].exchange: required: a route needs an exchange '
        "(the default exchange is not supported)"
    ]


def test_environment_variables_are_interpolated(parse: Callable[..., Topology]) -> None:
    topology = parse(
        """
        exchanges: [{name: "${PREFIX}-tasks", type: direct}]
        queues:
          - name: jobs
            max_length: ${JOBS_MAX:-1000}
            arguments:
              x-message-ttl: ${TTL}  # in {flow: style} a placeholder needs quotes
            bindings: [{exchange: "${PREFIX}-tasks", routing_key: "${KEY:-jobs}"}]
        routes:
          "*": {exchange: "${PREFIX}-tasks", routing_key: "jobs"}
        """,
        {"PREFIX": "acme", "TTL": "60000"},
    )
    queue = topology.queues[0]
    assert topology.exchanges[0].name == "acme-tasks"
    assert queue.bindings[0].routing_key == "jobs"
    # An unquoted placeholder takes the YAML type of its value; a quoted one stays a string.
    assert queue.declare_arguments == {
        "x-max-length": 1000,
        "x-message-ttl": 60000,
        "x-queue-type": "classic",
    }


def test_a_missing_environment_variable_names_the_variable_and_field(
    write_yaml: Callable[..., Path],
) -> None:
    path = write_yaml(
        """
        exchanges:
          - {name: tasks, type: direct}
          - {name: "${EXCHANGE_NAME}", type: direct}
        """
    )
    assert problems_of(path) == [
        f"{path}:3: exchanges[1].name: environment variable EXCHANGE_NAME is not set "
        "(set it, or write ${EXCHANGE_NAME:-default})"
    ]


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("x-${A}-y", {"A": "b"}, "x-b-y"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-fallback}", {"A": ""}, "fallback"),
        ("${A:-}", {}, ""),
        ("$${A}", {"A": "no"}, "${A}"),
        ("no placeholders", {}, "no placeholders"),
    ],
)
def test_interpolation_rules(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


def test_interpolation_without_default_raises_keyerror() -> None:
    with pytest.raises(KeyError, match="MISSING"):
        interpolate("${MISSING}", {})


def test_a_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as caught:
        load_topology(tmp_path / "amqpq.yaml")
    assert caught.value.problems == [
        f"{tmp_path / 'amqpq.yaml'}: topology file not found (pass -f FILE, set AMQPQ_TOPOLOGY, "
        "or create ./amqpq.yaml)"
    ]


def test_a_yaml_syntax_error_gives_its_line(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml("exchanges:\n  - {name: tasks, type: direct\nqueues: []\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:3: invalid YAML: ")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_file_is_one_clear_line(write_yaml: Callable[..., Path], text: str) -> None:
    path = write_yaml(text)
    assert problems_of(path) == [
        f"{path}: the file is empty; expected exchanges:, queues: and routes: "
        "(see docs/topology.md)"
    ]


def test_a_file_that_is_not_a_mapping_is_refused(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml("- just\n- a list\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:1: expected a mapping with exchanges:")


def test_a_key_written_twice_is_refused(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml(
        """
        routes:
          tasks.add: {exchange: tasks}
          tasks.add: {exchange: other}
        """
    )
    assert f'{path}:2: routes."tasks.add"' not in problems_of(path)[0]
    assert problems_of(path)[0] == f'{path}:3: routes["tasks.add"]: key written more than once'


def test_header_values_must_be_scalars(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml(
        """
        exchanges: [{name: reports, type: headers}]
        routes:
          "*": {exchange: reports, headers: {format: [pdf]}}
        """
    )
    assert problems_of(path) == [
        f'{path}:3: routes["*"].headers.format: expected a string, integer, number or boolean'
    ]


def test_the_file_cannot_claim_objects_are_managed_by_amqpq(
    write_yaml: Callable[..., Path],
) -> None:
    path = write_yaml("queues: [{name: jobs, managed_by_amqpq: true}]\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:1: queues[0].managed_by_amqpq: is set by amqpq")


def test_topology_error_is_a_config_error_with_a_summary() -> None:
    with pytest.raises(ConfigError, match=r"t\.yaml:1: .*\(and 1 more\)"):
        load_topology_text("queues: [{name: a, type: x}, {name: b, type: y}]\n", "t.yaml", {})
