"""The layout's rules, read from the code: layers point down, no import cycles, one folder per library, one
writer of Job rows, no import guards around our own modules, a first-line docstring on every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("alter0", "tasks", "web")

#: Lowest layer first; a module may import its own layer or lower ones only. Prefixes match whole names.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("alter0", "alter0.config", "alter0.errors", "alter0.paths", "alter0.inputs", "alter0.models",
              "alter0.prepared", "alter0.secrets", "alter0.faults", "alter0.repetition")),
    ("storage", ("alter0.database", "alter0.migrations", "alter0.archive", "alter0.jobstate", "alter0.taskstate",
                 "alter0.turns", "alter0.liveness", "alter0.retention", "alter0.memory", "alter0.jsonlog",
                 "alter0.logging_setup", "alter0.bind", "alter0.inflight", "alter0.principals", "alter0.audit",
                 "alter0.bounded", "alter0.tokens", "alter0.clock", "alter0.threads", "alter0.leader")),
    ("adapters", ("alter0.executors", "alter0.routing", "alter0.workspaces")),
    ("pipeline", ("alter0.candidates", "alter0.decide", "alter0.retry", "alter0.queue", "alter0.runtime",
                  "alter0.stages")),
    ("service", ("alter0.service", "alter0.views", "alter0.supervisor", "alter0.busy")),
    ("operations", ("alter0.ops", "alter0.commands")),
    ("channels", ("alter0.channels", "alter0.channels.trackers", "alter0.notify")),
    ("entry", ("alter0.cli", "alter0.tools", "alter0.config_docs", "tasks", "web")),
]
#: Third-party libraries each confined to one folder.
LIBRARY_HOME = {"huey": "tasks/huey_engine/", "dramatiq": "tasks/dramatiq_engine/", "flask": "web/",
                "nio": "alter0/channels/matrix/",
                "ik_llama_cpp": "alter0/executors/gguf_runner.py"}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


def _targets(module: str, node: ast.AST) -> list[str]:
    """Our modules an import statement names (relative imports resolved)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
            parts = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = []
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES and name != module:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> our modules it imports, at module level or inside functions alike."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(_targets(module, node))
    return graph


def layer_of(module: str) -> int:
    best, depth = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = index, len(prefix)
    return best


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) < 0] == []


def test_imports_only_go_down_the_layers():
    graph = import_graph()
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in graph.items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert upward == []


def test_storage_never_imports_ops_and_runtime_never_imports_tools():
    graph = import_graph()
    assert "alter0.ops" not in {t.rsplit(".", 1)[0] for t in graph["alter0.database"]}
    runtime = [m for m in MODULES if layer_of(m) < layer_of("alter0.cli")]
    assert [(m, t) for m in runtime for t in graph[m] if t.startswith("alter0.tools")] == []


def test_no_import_cycles():
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    # a package's __init__ re-exporting its own submodule is not a cycle of layers
    cycles = [c for c in cycles if not (len(c) == 2 and c[1].startswith(c[0] + "."))]
    assert cycles == []


def test_each_library_is_imported_in_one_folder():
    wrong = []
    for module, path in MODULES.items():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                home = LIBRARY_HOME.get(name.split(".")[0])
                if home and not rel.startswith(home):
                    wrong.append(f"{rel}: import {name}")
    assert wrong == []


JOB_WRITE = re.compile(r"\bJob\.(update|insert|insert_many|create|delete|replace|bulk_update|bulk_create)\(|"
                       r"\bjob\.(save|delete_instance)\(")


def test_only_jobstate_writes_job_rows():
    writers = [f"{p.relative_to(ROOT)}:{n}" for m, p in MODULES.items() if m != "alter0.jobstate"
               for n, line in enumerate(p.read_text().splitlines(), 1) if JOB_WRITE.search(line)]
    assert writers == []


def test_no_import_guards_around_our_own_modules():
    guarded = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                    for h in node.handlers):
                for inner in node.body:
                    for sub in ast.walk(inner):
                        if isinstance(sub, (ast.Import, ast.ImportFrom)) and _targets(module, sub):
                            guarded.append(f"{path.relative_to(ROOT)}:{sub.lineno}")
        text = path.read_text()
        guarded += [f"{path.relative_to(ROOT)}: find_spec({m.group(1)})"
                    for m in re.finditer(r"find_spec\(\"((?:alter0|tasks|web)[\w.]*)\"\)", text)]
    assert guarded == []


def test_every_module_says_its_job_first():
    missing = [str(p.relative_to(ROOT)) for p in MODULES.values()
               if p.name != "__init__.py" and not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []
