"""``dvc.yaml``, generated: ``python -m pipeline dvc-yaml`` writes it, ``--check`` says whether it is current.

A stage's code deps are the pipeline modules it imports, found statically (``ast``: top-level and
function-level imports, transitively, within ``pipeline/``; a package that imports its modules by
name, as the metric families, counts as importing them all), listed as files, or as the package
folder when the stage imports most of it. Its params are the keys it reads: train lists the model
section of the dataset's own model (found in the class that registers it), so that editing another
model's settings retrains nothing. DVC's ``foreach`` cannot pick a section per dataset from
params.yaml, so what differs per dataset (its source folder, its model's section) is written into
``vars`` here, and the file is regenerated when a dataset, its model or a stage's imports change
(``tests/unit/test_dvc_wiring.py`` fails until it is). Nothing here imports DVC, torch or a stage.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.config import Config, ModelConfig, ScoreConfig, load_config

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
DVC_YAML = "dvc.yaml"
VARS = "dvc_datasets"  # the vars entry: what differs per dataset
_AUTO = "auto"  # model.name auto: candidates chosen at run time, so train lists the whole model section


# -- What a module imports -----------------------------------------------------------------------

def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The file of a dotted module name under ``root`` (a package's ``__init__.py``), or None."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_modules(package: str, root: Path) -> set[str]:
    folder = root.joinpath(*package.split("."))
    return {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


_SEEN: dict[tuple[str, Path, int, int], set[str]] = {}  # a module's imports, by its file's modification time


def _imports(module: str, root: Path) -> set[str]:
    """The modules of the project one module imports, anywhere in it (function bodies too)."""
    path = module_file(module, root)
    stat = path.stat()
    key = (module, root, stat.st_mtime_ns, stat.st_size)
    if key not in _SEEN:
        _SEEN[key] = _read_imports(module, path, root)
    return _SEEN[key]


def _read_imports(module: str, path: Path, root: Path) -> set[str]:
    top = module.split(".")[0]
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != top:
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}", root))
        elif isinstance(node, ast.Call) and _called(node) == "import_module" and node.args:
            # importlib.import_module(f"pipeline.metrics.{name}"): every module of that package
            prefix = _constant_prefix(node.args[0])
            package = prefix.rstrip(".") if prefix.endswith(".") else prefix.rpartition(".")[0]
            if package.split(".")[0] == top and (module_file(package, root) or Path()).name == "__init__.py":
                found.update(_package_modules(package, root))
        elif isinstance(node, ast.Call) and _called(node) in ("iter_modules", "walk_packages"):
            # a package (or a registry module inside one) that discovers the package's own modules
            found.update(_package_modules(module if is_package else module.rpartition(".")[0], root))
    return {m for m in found if module_file(m, root)}


def _called(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _constant_prefix(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return ""


def imported_modules(module: str, root: Path = ROOT) -> set[str]:
    """``module`` and every project module it imports, transitively, with the packages above each
    (importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        if module_file(name, root) is not None:  # a folder without __init__.py runs no code
            todo.extend(_imports(name, root))
    return {m for m in seen if module_file(m, root)}


def code_deps(module: str, root: Path = ROOT) -> list[str]:
    """The deps of the code a stage runs: the files of what ``module`` imports, relative to
    ``root``, a subpackage as its folder when more than half its modules are imported. The stage's
    own module comes first."""
    modules = imported_modules(module, root)
    top = module.split(".")[0]
    deps: set[str] = set()
    whole: set[str] = set()
    for package in sorted({m for m in modules if module_file(m, root).name == "__init__.py" and m != top},
                          key=lambda m: m.count(".")):
        if any(package.startswith(w + ".") for w in whole):
            continue
        inside = _package_modules(package, root)
        if 2 * len(inside & modules) > len(inside):
            whole.add(package)
            deps.add(package.replace(".", "/"))
    for m in modules:
        if not any(m == w or m.startswith(w + ".") for w in whole):
            deps.add(module_file(m, root).relative_to(root).as_posix())
    own = module_file(module, root).relative_to(root).as_posix()
    return [own] + sorted(deps - {own})


def covers(deps: list[str], path: str) -> bool:
    """Whether a file is among ``deps``, itself or inside a folder listed."""
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


# -- What each stage reads and writes ------------------------------------------------------------

@dataclass(frozen=True)
class Wiring:
    """A stage's DVC wiring beside its code: what it reads (data, earlier stages' outputs), the
    params keys it reads, and the YAML of what it writes (outs, metrics, plots)."""

    reads: tuple[str, ...]
    params: tuple[str, ...]
    writes: str


# Every score key but score.thresholds: the gate is judged again at publish, so a changed threshold
# re-runs publish alone, not the scoring.
_SCORE_KEYS = tuple(f"score.{k}" for k in ScoreConfig.model_fields if k != "thresholds")
WIRING = {
    "ingest": Wiring(
        ("${item.data}            # the dataset's source files",),
        ("seed", "datasets.${key}", "ingest"),
        """      outs:
        - ${work_dir}/${key}/prepared
"""),
    "train": Wiring(
        ("${work_dir}/${key}/prepared",),
        ("seed", "datasets.${key}   # its overrides of the shared sections", "train", "model.name",
         "model.quantile_knots", "model.max_categories", "${item.model}   # its model's section alone"),
        """      outs:
        - ${work_dir}/${key}/model
        # Resumable checkpoints survive re-runs (python -m pipeline train --resume).
        - ${work_dir}/${key}/checkpoints:
            persist: true
            cache: false
        - ${work_dir}/${key}/train_log.csv:   # every loss, one row per epoch (the report draws it)
            cache: false
      plots:
        # One CSV (epoch, loss) per loss the model logs, one chart each: a loss named here would fail
        # `dvc plots show` for every model that does not log it (flow_loss: diffusion; critic_loss,
        # generator_loss: GANs; reconstruction_loss, kl_divergence: VAEs).
        - ${work_dir}/${key}/train_plots:
            cache: false
            x: epoch
"""),
    "generate": Wiring(
        ("${work_dir}/${key}/model",
         "${work_dir}/${key}/prepared   # generate.drop_training_copies compares with the training rows"),
        ("seed", "datasets.${key}", "generate", "train.device   # the device it samples on"),
        """      outs:
        - ${work_dir}/${key}/synthetic
"""),
    "score": Wiring(
        ("${work_dir}/${key}/prepared", "${work_dir}/${key}/synthetic",
         "${work_dir}/${key}/train_log.csv   # the report's loss curves"),
        ("seed", "datasets.${key}", *_SCORE_KEYS, "train.device   # the image evaluator's device"),
        """      outs:
        - ${work_dir}/${key}/score      # details.json: the record publish reads (scores, data hash, verdict)
      metrics:
        # The scores, numbers only: git-tracked (not cached), so `dvc exp show` compares experiments.
        - ${metrics_dir}/${key}.json:
            cache: false
"""),
    "publish": Wiring(
        ("${work_dir}/${key}/prepared", "${work_dir}/${key}/model", "${work_dir}/${key}/synthetic",
         "${work_dir}/${key}/score      # the scores and the hash of the data scored (details.json), the reports"),
        ("seed", "datasets.${key}", "score.thresholds   # the gate, judged here under the thresholds in force",
         "publish"),
        """      outs:
        # Releases accumulate and are never deleted by DVC: persist, and no DVC cache copy.
        - ${publish.release_root}/${key}:
            persist: true
            cache: false
"""),
}
SCORE_PARAMS_NOTE = ("      # Every score key but score.thresholds (publish's): a changed threshold re-runs publish "
                     "alone.\n")


# -- The per-dataset part ------------------------------------------------------------------------

_SECTIONS = tuple(k for k, v in ModelConfig().model_dump().items() if isinstance(v, dict))  # gan, tvae, ...


@cache
def _registered_classes(root: Path = ROOT) -> dict[str, tuple[Path, ast.ClassDef]]:
    """Each model class registered by name (``@register_model("name")``) under ``pipeline/models``."""
    found = {}
    for path in sorted((root / PACKAGE.name / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for deco in node.decorator_list:
                if (isinstance(deco, ast.Call) and _called(deco) == "register_model" and deco.args
                        and isinstance(deco.args[0], ast.Constant)):
                    found[deco.args[0].value] = (path, node)
    return found


def _class_sections(path: Path, cls: ast.ClassDef, root: Path, depth: int = 0) -> set[str]:
    """The model sections a model class reads (``cfg.gan``), in its body or its base classes'."""
    used = {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute) and n.attr in _SECTIONS}
    if used or depth > 4:
        return used
    classes = {n.name: (p, n) for p in sorted((root / PACKAGE.name / "models").rglob("*.py"))
               for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))) if isinstance(n, ast.ClassDef)}
    for base in cls.bases:
        name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
        if name in classes:
            used |= _class_sections(*classes[name], root, depth + 1)
    return used


def model_params(model: str, root: Path = ROOT) -> str:
    """The params key of the settings model ``model`` trains with: its section (``model.gan`` for
    ctgan), or the whole ``model`` (auto, or a model whose section cannot be told)."""
    found = _registered_classes(root).get(model)
    sections = _class_sections(*found, root) if found and model != _AUTO else set()
    return f"model.{sections.pop()}" if len(sections) == 1 else "model"


def _data_folder(cfg: Config, name: str, root: Path) -> str:
    """The folder of a dataset's local source files (source and holdout), relative to the repository;
    a source that is a URL is its own dep."""
    ds = cfg.dataset(name)
    local = [Path(s) for s in (ds.source, ds.holdout_source) if s and "://" not in str(s)]
    if not local:
        return str(ds.source)
    folders = [(p if p.is_absolute() else root / p).resolve() for p in local]
    common = Path(*[parts[0] for parts in zip(*(f.parent.parts if not f.is_dir() else f.parts for f in folders))
                    if len(set(parts)) == 1])
    try:
        folder = common.relative_to(root.resolve()).as_posix()
    except ValueError:
        return common.as_posix()
    # Files at the repository's top: the source file itself (the top folder holds every output too,
    # and DVC refuses a stage whose dep contains its outputs)
    return str(ds.source) if folder == "." else folder


def dataset_vars(params: Path | str, root: Path = ROOT) -> dict[str, dict[str, str]]:
    """Per dataset of ``params``: its source folder and its model's section."""
    cfg, given = load_config(params), _given(params)
    out = {}
    for name in cfg.datasets:
        section = model_params(cfg.for_dataset(name).model.name, root)
        out[name] = {"data": _data_folder(cfg, name, root),
                     "model": section if _in(given, section) else "model.name"}  # a section params leaves out
    return out


def _given(params: Path | str) -> dict:
    import yaml

    return yaml.safe_load(Path(params).read_text(encoding="utf-8")) or {}


def _in(tree: Any, key: str) -> bool:
    """Whether params sets a dotted key (DVC refuses a stage whose params key is missing)."""
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def _keys(keys: tuple[str, ...], given: dict) -> list[str]:
    """The params keys of a stage that params sets (one with ``${...}`` is per dataset: kept)."""
    return [k for k in keys if "${" in k or _in(given, k.split("#")[0].strip())]


# -- dvc.yaml ------------------------------------------------------------------------------------

HEADER = """\
# Generated by `python -m pipeline dvc-yaml` (pipeline/dvcgen.py): edit that, not this file, and run it again
# after changing a dataset or its model in params.yaml, or what a stage imports (tests/unit/test_dvc_wiring.py
# fails until then). One DVC stage per step for every dataset (stage names: ingest@adult, ...); each command
# calls the same stage function the Prefect flow calls. A stage's code deps are the pipeline modules it
# imports (a package as its folder when it imports most of it); its params are the keys it reads.
"""


def render(params: Path | str = "params.yaml", root: Path = ROOT) -> str:
    """The text of dvc.yaml for the datasets of ``params``."""
    from pipeline.stages import STAGE_NAMES

    missing = set(STAGE_NAMES) ^ set(WIRING)
    if missing:
        raise ValueError(f"stages without DVC wiring in pipeline/dvcgen.py WIRING, or wired but not in "
                         f"pipeline/stages.py: {sorted(missing)}")
    lines = [HEADER, "vars:\n", f"  - {VARS}:   # per dataset: its source folder, its model's params section\n"]
    for name, item in dataset_vars(params, root).items():
        lines.append(f"      {name}:\n" + "".join(f"        {k}: {_scalar(v)}\n" for k, v in item.items()))
    lines.append("\nstages:\n")
    for stage in STAGE_NAMES:
        w = WIRING[stage]
        lines.append(f"  {stage}:\n    foreach: ${{{VARS}}}\n    do:\n"
                     f"      cmd: python -m pipeline {stage} --dataset ${{key}}\n      deps:\n")
        lines += [f"        - {d}\n" for d in w.reads]
        lines += [f"        - {d}\n" for d in code_deps(f"{PACKAGE.name}.{stage}", root)]
        if stage == "score":
            lines.append(SCORE_PARAMS_NOTE)
        lines.append("      params:\n")
        lines += [f"        - {p}\n" for p in _keys(w.params, _given(params))]
        lines.append(w.writes)
        lines.append("\n")
    return "".join(lines).rstrip("\n") + "\n"


def _scalar(value: Any) -> str:
    import json

    text = str(value)
    return text if text.replace("/", "").replace(".", "").replace("_", "").replace("-", "").isalnum() \
        else json.dumps(text)


def stage_deps(text: str) -> dict[str, list[str]]:
    """Each stage's deps in a dvc.yaml text, comments dropped."""
    import yaml

    return {name: [d if isinstance(d, str) else next(iter(d)) for d in stage["do"]["deps"]]
            for name, stage in yaml.safe_load(text)["stages"].items()}


def write(params: Path | str = "params.yaml", out: Path | str = DVC_YAML, check: bool = False) -> str | None:
    """Write ``out`` for ``params``; with ``check``, write nothing and return the difference (None:
    ``out`` is current)."""
    text = render(params)
    out = Path(out)
    if check:
        old = out.read_text(encoding="utf-8") if out.is_file() else ""
        if old == text:
            return None
        return "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(out), "generated"))
    from pipeline.files import atomic_path

    with atomic_path(out) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return None
