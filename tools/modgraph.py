#!/usr/bin/env python3
"""The module graph of each crate, drawn from its imports, and its circles.

A module is a source file (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`). An
edge a -> b is a `crate::b...` or `super::...` path in a's code (comments and
the `#[cfg(test)]` part at a file's end left out). A module may name its own
submodules; a circle is a path back to where it started. Prints the graph
with `--print`; exits 1 when any crate has a circle (scripts/test runs it).
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_of(src: Path, file: Path) -> str:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts)


def code(text: str) -> str:
    """The text without comments and without the tests at its end."""
    cut = re.search(r"^#\[cfg\(test\)\]", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def targets(module: str, text: str, modules: set) -> set:
    """The modules `module` names."""
    out = set()
    parent = module.rsplit("::", 1)[0] if "::" in module else ""
    # `use crate::{a::x, b::{y, z}}` names a and b: expand one level of braces.
    for m in re.finditer(r"\b(crate|super)::\{([^;]*?)\}\s*;", text, re.S):
        base = "" if m.group(1) == "crate" else parent
        for item in re.split(r",(?![^{]*\})", m.group(2)):
            name = item.strip().split("::")[0].strip("{} \n")
            if name:
                out.add(resolve(base, [name] + item.strip().split("::")[1:], modules))
    for m in re.finditer(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
        base = "" if m.group(1) == "crate" else parent
        out.add(resolve(base, m.group(2).strip(":").split("::"), modules))
    out.discard(None)
    return {t for t in out if t != module and not t.startswith(module + "::")}


def resolve(base: str, path: list, modules: set):
    """The longest module that `base::path...` names."""
    best = None
    parts = ([base] if base else []) + [p.strip("{} \n") for p in path]
    for i in range(1, len(parts) + 1):
        candidate = "::".join(parts[:i])
        if candidate in modules:
            best = candidate
    return best


def cycles(graph: dict) -> list:
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def main():
    show = "--print" in sys.argv
    bad = 0
    for crate in sorted((ROOT / "crates").iterdir()):
        src = crate / "src"
        if not src.is_dir():
            continue
        files = sorted(src.rglob("*.rs"))
        modules = {module_of(src, f) for f in files}
        graph = {}
        for f in files:
            m = module_of(src, f)
            graph[m] = targets(m, code(f.read_text()), modules)
        if show:
            print(f"{crate.name}:")
            for m in sorted(graph):
                if graph[m]:
                    print(f"  {m or '(root)'} -> {', '.join(sorted(graph[m]))}")
        for c in cycles(graph):
            bad += 1
            print(f"{crate.name}: circle: {' -> '.join(c)}")
    if bad:
        sys.exit(1)
    print("module graph: no circles")


if __name__ == "__main__":
    main()
