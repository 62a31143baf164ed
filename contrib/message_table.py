"""The per-message table of docs/ARCHITECTURE.md ("Every message, in one
hop"): for each message of the internal schemas (wire/csv, all but the BOLT
one), who sends it and where it is handled, as `file:function`.

Found by reading the sources (ast), not by running them: a message name as a
key of a handler table (`HANDLERS`, `MASTER_HANDLERS`, hsmd's dispatch...),
in a table of names handled by one function (`STATUS_HANDLED`...) or
compared with a decoded message's name is where it is handled; anywhere
else in a function it is sent (`send`, `request`, `call`).  A reply or a
failure (request + 100, + 200) is handled where its request is sent (the
reply resolves that `request()`).

    python -m contrib.message_table            # print the table
    python -m contrib.message_table --write    # update docs/ARCHITECTURE.md

tests/test_message_table.py checks the document is up to date and that
every message has a handler and a sender.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from wire.internal import FAIL_OFFSET, REPLY_OFFSET, internal_schema, status_schema

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
BEGIN, END = "<!-- message-table:begin -->", "<!-- message-table:end -->"
#: schema -> (the two ends, master side first), for the direction column
SCHEMAS = {
    "channeld": ("master", "channeld"), "onchaind": ("master", "onchaind"), "gossipd": ("master", "gossipd"),
    "connectd": ("master", "connectd"), "hsmd": ("client", "hsmd"), "zygote": ("master", "zygote"),
    "gossip_link": ("connectd", "gossipd"), "peer_stream": ("channeld", "connectd"), "status": ("subdaemon", "master"),
}
SOURCES = ("lightningd", "channeld", "onchaind", "gossipd", "connectd", "hsmd", "zygote", "common")
SKIP = {"zygote/warmup.py"}     # runs the daemons' code paths on throw-away links


@dataclass
class Sites:
    handled: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)


def _schemas() -> dict[str, list[tuple[str, int]]]:
    out = {}
    for name in SCHEMAS:
        schema = status_schema() if name == "status" else internal_schema(name)
        out[name] = sorted(((m.name, m.number) for m in schema.messages.values()), key=lambda x: x[1])
    return out


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: str, names: set[str], sites: dict[str, Sites]) -> None:
        self.path, self.names, self.sites = path, names, sites
        self.scope: list[str] = []
        self.table: str | None = None       # the handler table being read

    def where(self, name: str | None = None) -> str:
        return f"{self.path}:{name or '.'.join(self.scope) or '<module>'}"

    def _scoped(self, node: ast.AST, name: str) -> None:
        self.scope.append(name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def _assign(self, targets: list[ast.expr], value: ast.expr | None) -> None:
        names = [t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else "" for t in targets]
        table = next((n for n in names if n.endswith(("HANDLERS", "HANDLED"))), None)
        if table is None or value is None:
            if value is not None:
                self.visit(value)
            return
        cls = self.scope[0] if self.scope else None
        if isinstance(value, ast.Dict):
            for k, v in zip(value.keys, value.values):
                if isinstance(k, ast.Constant) and k.value in self.names:
                    if isinstance(v, ast.Constant) and isinstance(v.value, str) and cls:
                        handler = f"{cls}.{v.value}"      # {"msg": "method"} in a class
                    elif isinstance(v, ast.Attribute):
                        handler = f"{cls}.{v.attr}" if cls else v.attr
                    else:
                        handler = table                   # lambdas in a module-level table
                    self.sites[k.value].handled.add(self.where(handler))
                else:
                    self.visit(v)
            return
        for node in ast.walk(value):                      # a set/tuple of names handled by one function
            if isinstance(node, ast.Constant) and node.value in self.names:
                self.sites[node.value].handled.add(self.where(table))

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assign(node.targets, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assign([node.target], node.value)

    def visit_Dict(self, node: ast.Dict) -> None:
        # a handler dict built in a function (hsmd's handlers_for): "msg": self.handle_x
        for k, v in zip(node.keys, node.values):
            if isinstance(k, ast.Constant) and k.value in self.names and isinstance(v, ast.Attribute):
                cls = self.scope[0] if self.scope else ""
                self.sites[k.value].handled.add(self.where(f"{cls}.{v.attr}"))
            else:
                if k is not None:
                    self.visit(k)
                self.visit(v)

    def visit_Compare(self, node: ast.Compare) -> None:
        # `msg.name == "status_log"`: handled here
        for c in [node.left, *node.comparators]:
            if isinstance(c, ast.Constant) and c.value in self.names and self.scope:
                self.sites[c.value].handled.add(self.where())
            else:
                self.visit(c)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value in self.names and self.scope:
            self.sites[node.value].sent.add(self.where())


def scan() -> tuple[dict[str, list[tuple[str, int]]], dict[str, Sites]]:
    schemas = _schemas()
    names = {n for msgs in schemas.values() for n, _ in msgs}
    sites: dict[str, Sites] = defaultdict(Sites)
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in SKIP:
                _Visitor(rel, names, sites).visit(ast.parse(path.read_text(), rel))
    # a reply or failure is handled where its request is sent (and, when the
    # dispatch makes it of the handler's return value, sent by that handler)
    for msgs in schemas.values():
        by_number = {num: name for name, num in msgs}
        for name, num in msgs:
            request = next((by_number[num - off] for off in (FAIL_OFFSET, REPLY_OFFSET)
                            if num - off in by_number and not _is_answer(by_number, num - off)), None)
            if request is not None:
                sites[name].handled = set(sites[request].sent)
                sites[name].sent = sites[name].sent or set(sites[request].handled)
    return schemas, sites


def _is_answer(by_number: dict[int, str], num: int) -> bool:
    """Is message `num` itself a reply or a failure (of num - 100, - 200)?"""
    return (num - REPLY_OFFSET in by_number and by_number[num - REPLY_OFFSET] + "_reply" == by_number[num]) or \
        (num - FAIL_OFFSET in by_number)


def _daemon(site: str) -> str:
    return site.split("/", 1)[0]


def _direction(schema: str, name: str, s: Sites) -> str:
    a, b = SCHEMAS[schema]
    senders = {_daemon(x) for x in s.sent}
    if schema == "status":
        return "subdaemon → master"
    if schema == "hsmd":
        return "hsmd → client" if senders <= {"hsmd", "common"} else "client → hsmd"
    if schema in ("gossip_link", "peer_stream"):
        src = senders - {"common"}
        frm = src.pop() if len(src) == 1 else a
        return f"{frm} → {b if frm == a else a}"
    return f"{b} → master" if senders and senders <= {b, "common"} else f"master → {b}"


def generate() -> str:
    schemas, sites = scan()
    out = []
    for schema, msgs in schemas.items():
        out.append(f"\n`wire/csv/{schema}.csv`\n")
        out.append("| message | # | direction | sent by | handled by |")
        out.append("|---|---|---|---|---|")
        for name, num in msgs:
            s = sites[name]
            out.append(f"| `{name}` | {num} | {_direction(schema, name, s)} | "
                       f"{', '.join(f'`{x}`' for x in sorted(s.sent)) or '—'} | "
                       f"{', '.join(f'`{x}`' for x in sorted(s.handled)) or '—'} |")
    return "\n".join(out).lstrip("\n") + "\n"


def document_section() -> str:
    text = DOC.read_text()
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n") + "\n"


def write() -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + generate() + text[end:])


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        sys.stdout.write(generate())
