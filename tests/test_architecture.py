"""The package's layers and the one place for each piece of knowledge (issue #21).

- Imports point down: no cycle between modules, and no module imports a layer above its own
  (docs/design.md, "Layers").
- The stage -> code mapping (inloop.paths.STAGE_CODE) is what Snakemake hashes and what dvc.yaml
  lists as each stage's deps.
- Output paths are spelled in inloop.paths only: the rules carry no `results/...` literal.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

import inloop.paths as P

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PKG = SRC / "inloop"

# Lowest first. A module may import its own layer's modules and any layer below.
LAYERS = [
    {"errors", "fsutil", "lazy", "paths", "names", "scheduling"},
    {"yuv", "bitstream", "download"},
    {"psnr"},
    {"codecs"},
    {"models"},
    {"params"},
    {"datasets", "training"},
    {"evaluation"},
    {"reporting"},
    {"bench", "rehearsal", "cli"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the inloop modules it imports (top level and inside functions alike)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [f"{target}.{a.name}" for a in node.names] + [target]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in modules and t != mod:
                    graph[mod].add(t)
                    break
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2:
        return -1  # the package's own __init__
    name = parts[1]
    assert name in RANK, f"{module}: its top-level name {name!r} is in no layer of LAYERS: place it"
    return RANK[name]


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_imports_point_down():
    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
              if _layer(a) >= 0 and _layer(b) > _layer(a)]
    assert not upward, "imports into a higher layer:\n" + "\n".join(sorted(upward))


def test_codecs_and_models_stay_below_evaluation_training_reporting():
    """Issue #21's acceptance, named: an SSIM edit must not rerun every encode, nor a network need the trainer."""
    high = ("inloop.evaluation", "inloop.training", "inloop.reporting", "inloop.datasets")
    bad = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
           if a.startswith(("inloop.codecs", "inloop.models")) and b.startswith(high)]
    assert not bad, bad


def test_the_layer_checker_sees_an_upward_import(tmp_path):
    """The checks above can fail: a codec module importing evaluation is caught."""
    graph = import_graph()
    graph["inloop.codecs.base"] = graph["inloop.codecs.base"] | {"inloop.evaluation.metrics"}
    upward = [(a, b) for a, t in graph.items() for b in t if _layer(a) >= 0 and _layer(b) > _layer(a)]
    assert ("inloop.codecs.base", "inloop.evaluation.metrics") in upward


def _dvc_code_deps(stage: dict) -> set[str]:
    return {d.removeprefix("src/inloop/") for d in stage["deps"] if d.startswith("src/inloop/")}


def test_dvc_stage_deps_are_the_stage_code_mapping():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(P.STAGE_CODE), "dvc.yaml's stages and inloop.paths.STAGE_CODE differ"
    for name, stage in stages.items():
        expected = set(P.STAGE_CODE[name])
        assert _dvc_code_deps(stage) == expected, f"dvc.yaml stage {name}: code deps differ from STAGE_CODE"
        for path in expected:
            assert (PKG / path).exists(), f"STAGE_CODE[{name!r}] names {path}, which is not in src/inloop"


def test_every_stage_code_covers_what_its_modules_import():
    """A stage's code hash must change when anything its entry modules import changes (else Snakemake and DVC
    would not rerun it): every inloop module reachable from the stage's own code lies inside STAGE_CODE[stage]
    (the low-level modules errors/fsutil/lazy/paths excepted: they hold no computation)."""
    graph = import_graph()
    exempt = {"inloop.errors", "inloop.fsutil", "inloop.lazy", "inloop.paths", "inloop.names", "inloop",
              "inloop.params"}

    def covered(module: str, roots) -> bool:
        rel = module.removeprefix("inloop.").replace(".", "/")
        return any(rel == r.removesuffix(".py") or rel.startswith(r.rstrip("/") + "/") for r in roots)

    entries = {"data": ["inloop.datasets"], "encode": ["inloop.codecs"], "patches": ["inloop.training.patches"],
               "train": ["inloop.training.run"], "evaluate": ["inloop.evaluation.evaluate"],
               "evaluate_codecs": ["inloop.evaluation.evaluate"], "report": ["inloop.reporting.report"]}
    for stage, roots in P.STAGE_CODE.items():
        seen, todo = set(), [m for m in graph if any(m == e or m.startswith(e + ".") for e in entries[stage])]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            if m != "inloop.params":  # its lazy model-block check is params checking, not the stage's computation
                todo += graph[m]
        missing = sorted(m for m in seen - exempt if not covered(m, roots))
        assert not missing, f"stage {stage}: {missing} imported but not in STAGE_CODE"


def test_rules_and_package_spell_no_output_path():
    """Output paths live in inloop.paths: a `results/...` literal in a rule file or elsewhere in the package is a
    second copy (docstrings and comments may name the folders)."""
    found = []
    code_files = [f for f in PKG.rglob("*.py") if f.name != "paths.py"]
    for f in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk")), *sorted(code_files)]:
        for i, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"[\"']results(/|[\"'])", code) and not code.strip().startswith(("``", '"""', "'")):
                found.append(f"{f.relative_to(REPO)}:{i}: {line.strip()}")
    assert not found, "\n".join(found)


def test_codec_and_configuration_names_are_the_codecs_package():
    """The schema's codec and configuration names are inloop.codecs' (the rules' wildcards are built from it)."""
    from inloop.names import CODECS, CONFIGS
    from inloop.params import _schema

    props = _schema()["properties"]
    assert props["encode"]["properties"]["codec"]["enum"] == list(CODECS)
    for where in (props["encode"]["properties"]["configs"]["items"]["enum"],
                  props["train"]["properties"]["configs"]["items"]["enum"],
                  props["pipeline"]["properties"]["train_datasets"]["propertyNames"]["enum"]):
        assert where == list(CONFIGS)


def test_the_command_line_parser_imports_no_heavy_library():
    """Every rule's job starts with ``inloop``'s parser (all sub-commands): building it must not execute torch, pandas,
    matplotlib or scipy (a lazily imported module counts only once it is used). 258 encode jobs of the demo paid
    about 0.2 s each for pandas through the report's parser."""
    import subprocess
    import sys

    code = ("import importlib.util, sys\n"
            "from inloop.cli import build_parser\n"
            "build_parser()\n"
            "lazy = importlib.util._LazyModule\n"
            "print(' '.join(m for m in ('torch', 'pandas', 'matplotlib', 'scipy')\n"
            "               if m in sys.modules and type(sys.modules[m]) is not lazy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"building inloop's parser imports {out}"
