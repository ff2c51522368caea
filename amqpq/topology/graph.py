"""The routing picture: task routes -> exchanges -> queues, as Mermaid or Graphviz DOT.

amqpq's own infrastructure (dead letters, 30 delay levels) is collapsed into two
summary nodes unless ``show_all`` is set, so the picture shows the file first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from amqpq.topology.infra import (
    DELAY_LEVELS,
    dead_letter_exchange_name,
    delay_deliver_exchange_name,
    effective_topology,
)
from amqpq.topology.models import Binding, Topology

__all__ = ["GraphFormat", "render_graph"]

GraphFormat = Literal["mermaid", "dot"]
NodeKind = Literal["route", "exchange", "queue", "summary"]
EdgeStyle = Literal["route", "binding", "e2e", "alternate", "dead_letter", "delay"]


@dataclass(frozen=True)
class _Node:
    id: str
    label: str
    kind: NodeKind
    managed: bool = False


@dataclass(frozen=True)
class _Edge:
    source: str
    target: str
    label: str
    style: EdgeStyle


@dataclass
class _Picture:
    nodes: list[_Node] = field(default_factory=list)
    edges: list[_Edge] = field(default_factory=list)
    ids: dict[tuple[str, str], str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def id_for(self, kind: str, name: str) -> str:
        """A stable node id that is safe in both languages (names may hold any character)."""
        key = (kind, name)
        if key not in self.ids:
            slug = re.sub(r"[^A-Za-z0-9_]", "_", name)[:40]
            self.ids[key] = node_id = f"{kind[0]}{len(self.ids)}_{slug}"
            self.names[node_id] = name
        return self.ids[key]


def _binding_label(binding: Binding, exchange_type: str | None) -> str:
    if exchange_type == "headers":
        kind = binding.arguments.get("x-match", "all")
        pairs = [f"{k}={v}" for k, v in binding.arguments.items() if k != "x-match"]
        return f"{kind}: {', '.join(pairs)}" if pairs else f"{kind}"
    if exchange_type == "fanout":
        return ""
    return binding.routing_key


def _build(topology: Topology, show_all: bool) -> _Picture:
    effective = effective_topology(topology)
    picture = _Picture()
    types = {x.name: x.type for x in effective.exchanges}

    def visible(managed: bool) -> bool:
        return show_all or not managed

    for pattern, route in effective.routes.items():
        node = picture.id_for("route", pattern)
        picture.nodes.append(_Node(node, pattern, "route"))
        parts = [route.routing_key] if route.routing_key else []
        parts += [f"{k}={v}" for k, v in route.headers.items()]
        picture.edges.append(
            _Edge(node, picture.id_for("exchange", route.exchange), ", ".join(parts), "route")
        )
    for exchange in effective.exchanges:
        if visible(exchange.managed_by_amqpq):
            picture.nodes.append(
                _Node(
                    picture.id_for("exchange", exchange.name),
                    f"{exchange.name} ({exchange.type})",
                    "exchange",
                    exchange.managed_by_amqpq,
                )
            )
            if exchange.alternate:
                picture.edges.append(
                    _Edge(
                        picture.id_for("exchange", exchange.name),
                        picture.id_for("exchange", exchange.alternate),
                        "unroutable",
                        "alternate",
                    )
                )
    for queue in effective.queues:
        if visible(queue.managed_by_amqpq):
            picture.nodes.append(
                _Node(
                    picture.id_for("queue", queue.name),
                    f"{queue.name} ({queue.type})",
                    "queue",
                    queue.managed_by_amqpq,
                )
            )
    for binding in effective.bindings():
        if not visible(binding.managed_by_amqpq):
            continue
        target_kind = "exchange" if binding.destination_type == "exchange" else "queue"
        picture.edges.append(
            _Edge(
                picture.id_for("exchange", binding.source),
                picture.id_for(target_kind, binding.destination),
                _binding_label(binding, types.get(binding.source)),
                "e2e" if target_kind == "exchange" else "binding",
            )
        )
    # Built-in amq.* exchanges the file binds to without declaring them.
    drawn = {n.id for n in picture.nodes}
    for edge in list(picture.edges):
        for end in (edge.source, edge.target):
            if end not in drawn:
                picture.nodes.append(_Node(end, picture.names[end], "exchange"))
                drawn.add(end)
    if not show_all:
        _add_summaries(effective, picture)
    return picture


def _add_summaries(effective: Topology, picture: _Picture) -> None:
    infra = effective.infrastructure
    prefix = infra.prefix
    dlx = dead_letter_exchange_name(prefix)
    dlqs = [
        q
        for q in effective.queues
        if q.managed_by_amqpq and any(b.exchange == dlx for b in q.bindings)
    ]
    if infra.dead_letters and dlqs:
        node = picture.id_for("summary", dlx)
        picture.nodes.append(
            _Node(node, f"{dlx} -> {len(dlqs)} dead-letter queues (.dlq)", "summary", True)
        )
        for queue in effective.queues:
            if (
                not queue.managed_by_amqpq
                and queue.declare_arguments.get("x-dead-letter-exchange") == dlx
            ):
                picture.edges.append(
                    _Edge(picture.id_for("queue", queue.name), node, "dead letters", "dead_letter")
                )
    if infra.delay:
        node = picture.id_for("summary", f"{prefix}.delay")
        picture.nodes.append(
            _Node(
                node,
                f"{prefix}.delay.* (delay levels \N{MULTIPLICATION SIGN}{DELAY_LEVELS})"
                f" -> {delay_deliver_exchange_name(prefix)}",
                "summary",
                True,
            )
        )
        for exchange in effective.exchanges:
            if not exchange.managed_by_amqpq:
                picture.edges.append(
                    _Edge(
                        node, picture.id_for("exchange", exchange.name), "countdown / eta", "delay"
                    )
                )


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def _to_mermaid(picture: _Picture) -> str:
    shapes = {
        "route": ('(["', '"])'),
        "exchange": ('{{"', '"}}'),
        "queue": ('[("', '")]'),
        "summary": ('[["', '"]]'),
    }
    arrows = {
        "route": "-->",
        "binding": "-->",
        "e2e": "==>",
        "alternate": "-.->",
        "dead_letter": "-.->",
        "delay": "-.->",
    }
    lines = ["flowchart LR"]

    def node_line(node: _Node) -> str:
        open_, close = shapes[node.kind]
        return f"  {node.id}{open_}{_mermaid_text(node.label)}{close}"

    lines += [node_line(n) for n in picture.nodes if not n.managed]
    managed = [n for n in picture.nodes if n.managed]
    if managed:
        lines.append('  subgraph infrastructure["amqpq infrastructure"]')
        lines += ["  " + node_line(n) for n in managed]
        lines.append("  end")
    for edge in picture.edges:
        arrow = arrows[edge.style]
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"  {edge.source} {arrow}{label} {edge.target}")
    lines += [
        "  classDef route fill:#eef,stroke:#557",
        "  classDef exchange fill:#ffd,stroke:#aa5",
        "  classDef queue fill:#efe,stroke:#5a5",
    ]
    for kind in ("route", "exchange", "queue"):
        ids = [n.id for n in picture.nodes if n.kind == kind]
        if ids:
            lines.append(f"  class {','.join(ids)} {kind}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _to_dot(picture: _Picture) -> str:
    shapes = {
        "route": 'shape=box, style="rounded,filled", fillcolor="#eeeeff"',
        "exchange": 'shape=hexagon, style=filled, fillcolor="#ffffdd"',
        "queue": 'shape=cylinder, style=filled, fillcolor="#eeffee"',
        "summary": 'shape=box3d, style=filled, fillcolor="#eeeeee"',
    }
    styles = {
        "route": "",
        "binding": "",
        "e2e": "penwidth=2",
        "alternate": "style=dashed",
        "dead_letter": "style=dotted",
        "delay": "style=dotted",
    }
    lines = ["digraph amqpq {", "  rankdir=LR;", '  node [fontname="Helvetica"];']

    def node_line(node: _Node) -> str:
        return f'  "{node.id}" [label="{_dot_text(node.label)}", {shapes[node.kind]}];'

    lines += [node_line(n) for n in picture.nodes if not n.managed]
    managed = [n for n in picture.nodes if n.managed]
    if managed:
        lines += ["  subgraph cluster_infrastructure {", '    label="amqpq infrastructure";']
        lines += ["  " + node_line(n) for n in managed]
        lines.append("  }")
    for edge in picture.edges:
        attributes = [a for a in (styles[edge.style],) if a]
        if edge.label:
            attributes.append(f'label="{_dot_text(edge.label)}"')
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f'  "{edge.source}" -> "{edge.target}"{suffix};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_graph(
    topology: Topology, fmt: GraphFormat = "mermaid", *, show_all: bool = False
) -> str:
    """The topology as a Mermaid flowchart or a Graphviz digraph."""
    picture = _build(topology, show_all)
    return _to_dot(picture) if fmt == "dot" else _to_mermaid(picture)
