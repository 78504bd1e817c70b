"""Prints the Prometheus metric names the installed SGLang defines, one per line.

Run with the pinned SGLang's venv (engine/conformance/run). SGLang's metrics need a running
scheduler on a GPU to be exported, so instead of a captured `/metrics` the names come from
its source: every `Gauge`/`Counter`/`Histogram`/`Summary` constructed with a literal
`sglang:` name (keyword `name=` or the first argument), found by parsing each module of the
package with `ast` (nothing is imported or run).
"""

import ast
import importlib.metadata
import importlib.util
import pathlib
import sys

KINDS = {"Gauge", "Counter", "Histogram", "Summary"}


def kind(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def literal_name(call: ast.Call):
    for kw in call.keywords:
        if kw.arg == "name" and isinstance(kw.value, ast.Constant):
            return kw.value.value
    if call.args and isinstance(call.args[0], ast.Constant):
        return call.args[0].value
    return None


def main() -> None:
    spec = importlib.util.find_spec("sglang")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("sglang is not installed in this interpreter")
    root = pathlib.Path(list(spec.submodule_search_locations)[0])
    names = set()
    for path in sorted(root.rglob("*.py")):
        if "test" in path.relative_to(root).parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and kind(node) in KINDS:
                name = literal_name(node)
                if isinstance(name, str) and name.startswith("sglang:"):
                    names.add(name)
    if not names:
        sys.exit(f"no sglang: metric definitions found under {root}")
    print(f"# metric names defined by sglang {importlib.metadata.version('sglang')}")
    for name in sorted(names):
        print(name)


if __name__ == "__main__":
    main()
