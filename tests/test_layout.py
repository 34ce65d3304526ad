"""The package's three floors: the core imports nothing above it, and stays small enough to read."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "probunet"
CORE = sorted(PACKAGE.glob("*.py"))
BASELINES = sorted((PACKAGE / "baselines").glob("*.py"))
TOY = sorted((PACKAGE / "toy").glob("*.py"))
BOOK = sorted((PACKAGE / "book").glob("*.py"))


def imported_modules(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) for every import in a file of the package."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names = [alias.name for alias in node.names]
            out += [(module, names)] + [(f"{module}.{n}", []) for n in names]
    return out


@pytest.mark.parametrize("path", CORE + BASELINES + TOY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_floor_imports_a_floor_above_it(path):
    # the baselines sit beside the core's models: the core never needs them, they never need the toys
    if path in CORE:
        above = ("probunet.baselines", "probunet.toy", "probunet.book")
    elif path in BASELINES:
        above = ("probunet.toy", "probunet.book")
    else:
        above = ("probunet.book",)
    bad = [m for m, _ in imported_modules(path) if m.startswith(above)]
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", CORE + BASELINES + TOY + BOOK, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_private_names_of_another(path):
    bad = [(m, n) for m, names in imported_modules(path) if m.startswith("probunet") for n in names
           if n.startswith("_") and n != "__version__"]
    assert not bad, f"{path.name} imports private names {bad}"


def test_import_probunet_loads_the_core_only():
    code = ("import sys, probunet; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'matplotlib', 'ipywidgets', 'scipy'}), sorted(m for m in sys.modules if m.startswith('probunet.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, loaded = out.strip().split("] [")
    assert heavy == "[", f"import probunet loaded {heavy}]"
    assert not any(f"probunet.{floor}" in loaded for floor in ("baselines", "toy", "book")), loaded
    import probunet

    assert callable(probunet.load_model) and callable(probunet.fit)


# Reading LIDC's files and the command line are the core's input and output,
# not the model: they keep a budget of their own.
INPUT_OUTPUT = {"lidc.py", "cli.py", "__main__.py"}


def lines_of(paths) -> int:
    return sum(len(p.read_text().splitlines()) for p in paths)


def test_the_core_fits_in_1850_lines_of_79_characters():
    # 1,800 for the model, data, training, checkpoints, metrics and evaluation
    # as they were; 50 more for the recipe and the data module's LIDC entries
    model = lines_of(p for p in CORE if p.name not in INPUT_OUTPUT)
    assert model <= 1850, f"the core has {model} lines"
    io = lines_of(p for p in CORE if p.name in INPUT_OUTPUT)
    assert io <= 550, f"the LIDC readers and the command line have {io}"
    long = [(p.name, i + 1) for p in PACKAGE.rglob("*.py") for i, line in enumerate(p.read_text().splitlines())
            if len(line) > 79]
    assert not long, f"lines over 79 characters: {long[:10]}"
