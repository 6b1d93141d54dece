#!/usr/bin/env python3
"""Structure checks that CI runs (`.ci/run`):

1. no Rust source file over 500 lines;
2. no import circle between the files of a crate: an edge A -> B for every `use crate::...`
   (or `super::`) path in A, and every `crate::...` path written out in A's code, that resolves to module file B, where a path resolves to the
   longest module prefix that has a file; `mod x;` declarations are not edges (a parent
   re-exporting its children is how modules are built), so a circle means some file uses
   another that uses it back;
3. `optimizer.step(` appears only in the trainer (crates/algos/src/trainer/mod.rs);
4. the online loop (`train_online`) stays a short loop over phases (at most 120 lines).

Usage: python3 scripts/check-structure.py [ROOT]
"""
import os
import re
import sys

MAX_LINES = 500
TRAINER = os.path.join("crates", "algos", "src", "trainer", "mod.rs")


def rust_files(root):
    for top in ["crates", "src", "examples", "benches", "tests"]:
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = [x for x in dirs if x not in ("target", "fixtures")]
            for f in files:
                if f.endswith(".rs"):
                    yield os.path.join(d, f)


def module_files(src):
    """Maps module paths ('a::b') of a crate's src dir to their files ('' is the root)."""
    modules = {}
    for d, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(d, f), src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            modules["::".join(rel)] = os.path.join(d, f)
    return modules


def use_paths(text):
    """Module paths named by `use crate::...` / `use super::...` (braces expanded one level)."""
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)::[^;]+);", text, re.S):
        stmt = re.sub(r"\s+", "", m.group(1))
        brace = stmt.find("{")
        if brace < 0:
            out.append(stmt)
            continue
        prefix = stmt[:brace]
        inner = stmt[brace + 1 : stmt.rfind("}")]
        depth, part, parts = 0, "", []
        for c in inner:
            if c == "," and depth == 0:
                parts.append(part)
                part = ""
                continue
            depth += c == "{"
            depth -= c == "}"
            part += c
        parts.append(part)
        for p in parts:
            p = p.split("{")[0]
            out.append(prefix + p if p else prefix.rstrip(":"))
    # Paths written out in code (`crate::rm::Model::load(..)`) are uses too.
    out += re.findall(r"\bcrate(?:::[A-Za-z_][A-Za-z0-9_]*)+", re.sub(r"\buse\s+[^;]+;", "", text))
    return out


def crate_graph(src):
    modules = module_files(src)
    by_file = {f: m for m, f in modules.items()}
    graph = {f: set() for f in modules.values()}
    for f, mod in by_file.items():
        here = mod.split("::") if mod else []
        is_dir_module = os.path.basename(f) in ("mod.rs", "lib.rs", "main.rs")
        for path in use_paths(open(f, encoding="utf-8").read()):
            parts = path.split("::")
            if parts[0] == "crate":
                parts = parts[1:]
            else:
                base = list(here) if is_dir_module else here[:-1]
                while parts and parts[0] in ("super", "self"):
                    if parts[0] == "super":
                        base = base[:-1]
                    parts = parts[1:]
                parts = base + parts
            for n in range(len(parts), -1, -1):
                target = modules.get("::".join(parts[:n]))
                if target:
                    break
            if target and target != f:
                graph[f].add(target)
    return graph


def cycles(graph):
    found, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def main(root):
    problems = []
    for f in rust_files(root):
        n = sum(1 for _ in open(f, encoding="utf-8"))
        if n > MAX_LINES:
            problems.append(f"{os.path.relpath(f, root)}: {n} lines (> {MAX_LINES})")
        text = open(f, encoding="utf-8").read()
        if "optimizer.step(" in text and os.path.relpath(f, root) != TRAINER:
            problems.append(f"{os.path.relpath(f, root)}: `optimizer.step(` outside {TRAINER}")
    online = os.path.join(root, "crates", "algos", "src", "online", "run.rs")
    if os.path.exists(online):
        lines = open(online, encoding="utf-8").read().split("\n")
        start = next(i for i, l in enumerate(lines) if l.startswith("pub fn train_online"))
        end = next(i for i in range(start, len(lines)) if lines[i] == "}")
        if end - start + 1 > 120:
            problems.append(f"train_online is {end - start + 1} lines (> 120)")
    crates = [os.path.join(root, "crates", c, "src") for c in sorted(os.listdir(os.path.join(root, "crates")))]
    for src in crates + [os.path.join(root, "src")]:
        if not os.path.isdir(src):
            continue
        graph = crate_graph(src)
        edges = sum(len(v) for v in graph.values())
        found = cycles(graph)
        for c in found:
            problems.append("import circle: " + " -> ".join(os.path.relpath(x, root) for x in c))
        print(f"{os.path.relpath(src, root)}: {len(graph)} files, {edges} imports between them, {len(found)} circles")
    for p in problems:
        print("FAIL", p)
    if problems:
        sys.exit(1)
    print("structure ok: no file over 500 lines, no import circle, one optimizer step, train_online within 120 lines")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
