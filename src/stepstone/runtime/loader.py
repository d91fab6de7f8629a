"""Scripts as immutable archives: pack a file or folder into a zip, load a version's class back.

Every version is importable on any worker from its archive alone. Each version's modules are
loaded fresh and then removed from ``sys.modules``, so two versions of one module never collide.
Imports between a script's own modules therefore belong at module level.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import io
import json
import sys
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from stepstone.domain.errors import WorkflowDefinitionError
from stepstone.domain.records import Version
from stepstone.graph import parse_definition
from stepstone.sdk.entrypoint import WorkflowEntrypoint

_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".stepstone"}


@dataclass(frozen=True, slots=True)
class PackedScript:
    archive: bytes
    source_hash: str
    script_name: str
    modules: dict[str, str]
    """Module name -> source text, for discovery."""


@dataclass(frozen=True, slots=True)
class FoundClass:
    module: str
    class_name: str


def pack(path: Path) -> PackedScript:
    """Zip one ``.py`` file, or every ``.py`` file under a folder, deterministically."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".py":
            raise WorkflowDefinitionError(f"{path} is not a Python file")
        return pack_files({path.name: path.read_text()}, path.stem)
    if path.is_dir():
        files = {
            p.relative_to(path).as_posix(): p.read_text()
            for p in sorted(path.rglob("*.py"))
            if not _SKIP_DIRS.intersection(p.relative_to(path).parts)
        }
        if not files:
            raise WorkflowDefinitionError(f"{path} holds no Python files")
        return pack_files(files, path.name)
    raise WorkflowDefinitionError(f"{path} does not exist")


def unpack(data: bytes, script_name: str) -> PackedScript:
    """An uploaded script: a zip of modules, or the UTF-8 source of one module."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                files = {
                    n: archive.read(n).decode() for n in archive.namelist() if n.endswith(".py")
                }
        except (zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise WorkflowDefinitionError(f"the script archive cannot be read: {exc}") from None
        if not files:
            raise WorkflowDefinitionError("the script archive holds no Python files")
        return pack_files(files, script_name)
    try:
        source = data.decode()
    except UnicodeDecodeError:
        raise WorkflowDefinitionError("a script is UTF-8 Python source or a zip of it") from None
    module = script_name.replace("-", "_").replace(".", "_")
    return pack_files({f"{module}.py": source}, script_name)


def pack_files(files: dict[str, str], script_name: str) -> PackedScript:
    """Zip ``files`` (path -> source) deterministically, so equal sources hash equally."""
    buffer = io.BytesIO()
    digest = hashlib.sha256()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in sorted(files.items()):
            archive.writestr(zipfile.ZipInfo(name, date_time=_EPOCH), text)
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    modules = {_module_name(name): text for name, text in files.items()}
    return PackedScript(buffer.getvalue(), digest.hexdigest(), script_name, modules)


def _module_name(path: str) -> str:
    parts = path[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def find_workflow_classes(script: PackedScript) -> list[FoundClass]:
    """Classes that extend ``WorkflowEntrypoint`` by name, found without running any code."""
    found: list[FoundClass] = []
    for module, source in sorted(script.modules.items()):
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise WorkflowDefinitionError(f"{module}: syntax error: {exc}") from None
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                (isinstance(b, ast.Name) and b.id == "WorkflowEntrypoint")
                or (isinstance(b, ast.Attribute) and b.attr == "WorkflowEntrypoint")
                for b in node.bases
            ):
                found.append(FoundClass(module, node.name))
    return found


def find_jobs(script: PackedScript) -> dict[str, tuple[str, str]]:
    """Functions decorated with ``@job(...)`` (or ``@stepstone.job``), found without running
    any code: job name -> (module, function)."""
    found: dict[str, tuple[str, str]] = {}
    for module, source in sorted(script.modules.items()):
        for node in ast.parse(source).body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for decorator in node.decorator_list:
                name = _job_name(decorator, node.name)
                if name is None:
                    continue
                if name in found:
                    raise WorkflowDefinitionError(
                        f"job {name!r} is defined twice ({found[name][0]} and {module})"
                    )
                found[name] = (module, node.name)
    return found


def _job_name(decorator: ast.expr, function: str) -> str | None:
    call = decorator if isinstance(decorator, ast.Call) else None
    target = call.func if call else decorator
    if not (
        (isinstance(target, ast.Name) and target.id == "job")
        or (isinstance(target, ast.Attribute) and target.attr == "job")
    ):
        return None
    if call is None:
        return function
    given = (
        call.args[0]
        if call.args
        else next((k.value for k in call.keywords if k.arg == "name"), None)
    )
    if given is None:
        return function
    if not isinstance(given, ast.Constant) or not isinstance(given.value, str) or not given.value:
        raise WorkflowDefinitionError(
            f"@job on {function}: the job name must be a string literal, so that deploying "
            "can register it without running the script"
        )
    return given.value


def module_defining(script: PackedScript, class_name: str) -> str:
    matches = [
        module
        for module, source in script.modules.items()
        if any(isinstance(n, ast.ClassDef) and n.name == class_name for n in ast.parse(source).body)
    ]
    if not matches:
        raise WorkflowDefinitionError(
            f"class {class_name!r} is not defined at the top level of {script.script_name}"
        )
    if len(matches) > 1:
        raise WorkflowDefinitionError(
            f"class {class_name!r} is defined in several modules: {', '.join(sorted(matches))}"
        )
    return matches[0]


GRAPH = "graph"
"""The language of graph workflows' versions: their archive is the definition's JSON."""


class VersionLoader:
    """Imports versions' classes from their archives, once per process and version."""

    def __init__(self) -> None:
        self._classes: dict[str, type[WorkflowEntrypoint]] = {}
        self._versions: dict[str, Version] = {}
        self._functions: dict[tuple[str, str, str], Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def known(self, version_id: str) -> Version | None:
        """A version loaded before in this process: versions never change, so no need to
        read it again."""
        return self._versions.get(version_id)

    def pin(self, version_id: str, cls: type[WorkflowEntrypoint]) -> None:
        """Use ``cls`` itself for ``version_id`` in this process (tests, ``stepstone.testing``)."""
        self._classes[version_id] = cls

    def load(self, version: Version) -> type[WorkflowEntrypoint]:
        cls = self._classes.get(version.id)
        if cls is None:
            if version.language == GRAPH:
                from stepstone.runtime.graph_run import graph_class

                definition = parse_definition(json.loads(version.archive))
                cls = graph_class(version.id, definition)
            else:
                cls = self.load_archive(version.archive, version.module, version.class_name)
            self._classes[version.id] = cls
        self._versions[version.id] = version
        return cls

    def load_function(
        self, archive: bytes, source_hash: str, module: str, function: str
    ) -> Callable[..., Any]:
        """``function`` of ``module`` in ``archive`` (a job), imported once per script."""
        key = (source_hash, module, function)
        found = self._functions.get(key)
        if found is None:
            loaded = self._import(archive, module)
            found = getattr(loaded, function, None)
            if not callable(found):
                raise WorkflowDefinitionError(f"{module} has no function {function!r}")
            self._functions[key] = found
        return found

    def load_archive(
        self, archive: bytes, module: str, class_name: str
    ) -> type[WorkflowEntrypoint]:
        """Import ``module`` from ``archive`` in isolation and return its workflow class."""
        return entrypoint_class(self._import(archive, module), class_name)

    def _import(self, archive: bytes, module: str) -> ModuleType:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            sources = {n: zf.read(n).decode() for n in zf.namelist() if n.endswith(".py")}
        finder = _ArchiveFinder(sources)
        roots = {name.split(".")[0] for name in finder.modules}
        with self._lock:
            saved = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] in roots}
            sys.meta_path.insert(0, finder)
            try:
                loaded = importlib.import_module(module)
            except Exception as exc:
                raise WorkflowDefinitionError(
                    f"importing {module} failed: {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                sys.meta_path.remove(finder)
                for name in [n for n in sys.modules if n.split(".")[0] in roots]:
                    del sys.modules[name]
                sys.modules.update(saved)
        return loaded


class _ArchiveFinder(importlib.abc.MetaPathFinder, importlib.abc.SourceLoader):  # type: ignore[misc]
    """Finds and loads the archive's own modules from memory."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.modules = {_module_name(path): (path, text) for path, text in sources.items()}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        is_package = self.modules[fullname][0].endswith("__init__.py")
        return importlib.util.spec_from_loader(fullname, self, is_package=is_package)

    def get_filename(self, fullname: str) -> str:
        return f"<stepstone archive>/{self.modules[fullname][0]}"

    def get_data(self, path: str) -> bytes:
        relative = path.removeprefix("<stepstone archive>/")
        for file, text in self.modules.values():
            if file == relative:
                return text.encode()
        raise OSError(path)


def entrypoint_class(module: ModuleType, class_name: str) -> type[WorkflowEntrypoint]:
    """The class ``class_name`` of ``module``, checked to be a usable workflow."""
    cls = getattr(module, class_name, None)
    if cls is None:
        raise WorkflowDefinitionError(f"{module.__name__} has no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, WorkflowEntrypoint)):
        raise WorkflowDefinitionError(
            f"{class_name} must extend stepstone.WorkflowEntrypoint to be a workflow"
        )
    run = getattr(cls, "run", None)
    if run is None or getattr(run, "__isabstractmethod__", False):
        raise WorkflowDefinitionError(
            f"{class_name} must define 'async def run(self, event, step)'"
        )
    if not inspect.iscoroutinefunction(run):
        raise WorkflowDefinitionError(f"{class_name}.run must be 'async def', not 'def'")
    return cls
