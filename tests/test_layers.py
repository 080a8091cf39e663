"""The layers of the code base: nothing imports upward (README, "Layout").

    helper.core < models, dataset, crd < helper.train < helper.sweep < helper.report < helper.cli < scripts

helper.sweep may use helper.train's loops (fine-tuning is training); helper.train never uses a sweep. The
sweep scripts write results files without the report layer that reads them, at any depth of their imports.
"""
import ast
import pathlib

import pytest

from tests.conftest import REPO_ROOT

ROOT = pathlib.Path(REPO_ROOT)
PROJECT = ("helper", "models", "dataset", "crd", "benchmarks")
# What each package may import from the project, besides itself.
ALLOWED = {
    "helper.core": set(),
    "models": {"helper.core"},
    "dataset": {"helper.core"},
    "crd": {"helper.core"},
    "helper.train": {"helper.core", "models", "dataset", "crd"},
    "helper.sweep": {"helper.core", "models", "dataset", "crd", "helper.train"},
    "helper.report": {"helper.core", "models", "dataset", "crd", "helper.train", "helper.sweep"},
}


def layer_of(module):
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def project_imports(path):
    """Every project module `path` imports, at any depth (lazy imports inside functions count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found.add(max((n for n in names if layer_of(n)), key=len, default=node.module))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in PROJECT}


def modules(layer):
    folder = ROOT.joinpath(*layer.split("."))
    return sorted(folder.rglob("*.py"))


def upward_imports(layer, paths):
    """'<file> imports <module>' for each import of `paths` (modules of `layer`) that the layer may not make."""
    wrong = []
    for path in paths:
        for name in sorted(project_imports(path)):
            target = layer_of(name) or name.split(".")[0]
            if target != layer and target not in ALLOWED[layer] and name != "helper":
                wrong.append(f"{path.name} imports {name}")
    return wrong


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_no_module_imports_upward(layer):
    assert modules(layer), f"{layer} has no modules"
    wrong = upward_imports(layer, modules(layer))
    assert not wrong, "\n".join(wrong)


SWEEP_SCRIPTS = ("transfer.py", "discriminability.py", "mine.py")


def module_file(name):
    """(module, file) of the project module `name` names ('helper.sweep.results' or one of its names, as
    imported), or (None, None)."""
    parts = name.split(".")
    while parts:
        for path in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
            if path.is_file():
                return ".".join(parts), path
        parts.pop()
    return None, None


def reached_modules(path):
    """{module: the file that imports it} of every project module `path` imports, directly or through others."""
    reached, todo = {}, [path]
    while todo:
        current = todo.pop()
        for name in project_imports(current):
            module, target = module_file(name)
            if module is not None and module not in reached:
                reached[module] = current
                todo.append(target)
    return reached


@pytest.mark.parametrize("script", SWEEP_SCRIPTS)
def test_the_sweeps_never_reach_the_report_layer(script):
    """The sweeps name, write and read their results files with helper/sweep alone; helper/report only reads them."""
    reached = reached_modules(ROOT / script)
    assert "helper.sweep.results" in reached
    wrong = [f"{importer.relative_to(ROOT)} imports {name}" for name, importer in sorted(reached.items())
             if layer_of(name) == "helper.report"]
    assert not wrong, "\n".join(wrong)


def test_the_import_walk_sees_the_report_layer_behind_another_module(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("from helper.report.figures import save\n")
    assert "helper.report.results" in reached_modules(script)        # figures imports results


def test_library_code_never_reads_the_argparse_namespace():
    """Only helper/cli turns flags into configs; below it, functions take configs or plain values."""
    hits = []
    for layer in ALLOWED:
        for path in modules(layer):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.replace("args.json", "")          # the file a run's flags are recorded in
                if "args." in code:
                    hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_the_layer_check_sees_a_violation(tmp_path):
    """The checker itself: a lazy upward import inside a function is found, a downward one is not."""
    bad = tmp_path / "bad.py"
    bad.write_text("from helper.core.errors import UserError\n\n\ndef f():\n"
                   "    from helper.sweep.results import ResultsCSV\n")
    assert upward_imports("helper.train", [bad]) == ["bad.py imports helper.sweep.results.ResultsCSV"]
    assert upward_imports("helper.report", [bad]) == []
