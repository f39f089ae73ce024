"""The code's shape: no import circles in `pipeline/` or `envs/` (imports inside functions count too), and one
episode loop."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def module_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports. `from P import n` names the submodule P.n when there is one,
    otherwise the package P itself (a name defined in its __init__)."""
    files = {}
    for package in ("pipeline", "envs"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = {f"{node.module}.{alias.name}" for alias in node.names} & files.keys()
                imported |= subs if len(subs) == len(node.names) else subs | {node.module}
        graph[name] = (imported & files.keys()) - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, path = [], {}, []

    def visit(node):
        state[node], _ = "open", path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        state[node], _ = "done", path.pop()

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_there_are_no_import_circles():
    assert circles(module_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert module_graph()["pipeline.support"] >= {"pipeline.batches", "pipeline.algorithm"}


def test_one_episode_loop_plays_the_scripted_policies():
    """`envs.base.play` is the only code in `pipeline/` or `envs/` that asks a scripted policy for actions
    (`.act(`): collection, the measure command and evaluation's behaviour chunks all go through it."""
    callers = sorted(str(path.relative_to(ROOT)) for package in ("pipeline", "envs")
                     for path in (ROOT / package).rglob("*.py") if ".act(" in path.read_text())
    assert callers == ["envs/base.py"], callers
