"""Load and validate workflow YAML, reporting every problem with its line and key.

The YAML is composed into a node tree (not constructed into plain dicts) so that each
value keeps the line it came from; validation walks that tree and collects all problems
before raising a single :class:`WorkflowError`.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import yaml

from appliance.workflows.model import (
    CodedConcept,
    Destination,
    InferenceSettings,
    LabelSpec,
    ModelSpec,
    ReaderSettings,
    SeriesRules,
    TensorSpec,
    TritonSettings,
    Workflow,
    WriterSettings,
)

T = TypeVar("T")

_STAGE_NAMES = ("reader", "inference", "writer")
_DATATYPES = ("FP32", "FP16")


class WorkflowError(ValueError):
    """A workflow file is not valid; ``problems`` holds one ``"FILE:LINE: KEY: message"`` per issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Problems:
    """Collects messages that name the source file, line and dotted key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, node: yaml.Node | None, key: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.items.append(f"{self.source}:{line}: {key}: {message}")


class _Map:
    """A YAML mapping node with typed getters; unknown keys are reported when :meth:`done` runs."""

    def __init__(self, node: yaml.Node, key: str, problems: _Problems) -> None:
        self.node = node
        self.key = key
        self.problems = problems
        self.entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        self.used: set[str] = set()
        if not isinstance(node, yaml.MappingNode):
            problems.add(node, key or "(top level)", "expected a mapping")
            return
        for k, v in node.value:
            name = str(k.value)
            if name in self.entries:
                problems.add(k, self._sub(name), "duplicate key")
            self.entries[name] = (k, v)

    def _sub(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def has(self, name: str) -> bool:
        return name in self.entries

    def value_node(self, name: str) -> yaml.Node | None:
        entry = self.entries.get(name)
        return entry[1] if entry else None

    def get(self, name: str, conv: Callable[[yaml.Node, str, _Problems], T], default: T) -> T:
        """Convert ``name`` with ``conv``; a missing key gives ``default``."""
        self.used.add(name)
        entry = self.entries.get(name)
        if entry is None:
            return default
        return conv(entry[1], self._sub(name), self.problems)

    def require(self, name: str, conv: Callable[[yaml.Node, str, _Problems], T], default: T) -> T:
        """Like :meth:`get` but a missing key is a problem (``default`` keeps validation going)."""
        if name not in self.entries:
            self.used.add(name)
            self.problems.add(self.node, self._sub(name), "required key is missing")
            return default
        return self.get(name, conv, default)

    def sub_map(self, name: str) -> _Map:
        self.used.add(name)
        node = self.value_node(name)
        if node is None:
            node = yaml.MappingNode("tag:yaml.org,2002:map", [], self.node.start_mark, self.node.end_mark)
        return _Map(node, self._sub(name), self.problems)

    def done(self) -> None:
        for name, (k, _) in self.entries.items():
            if name not in self.used:
                self.problems.add(k, self._sub(name), "unknown key")


# Scalar converters: each reports its own problem and returns a harmless fallback.


def _str(node: yaml.Node, key: str, problems: _Problems) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.value == "":
        problems.add(node, key, "expected a non-empty string")
        return ""
    return str(node.value)


def _int(node: yaml.Node, key: str, problems: _Problems) -> int:
    try:
        if isinstance(node, yaml.ScalarNode):
            return int(node.value)
    except ValueError:
        pass
    problems.add(node, key, "expected an integer")
    return 0


def _float(node: yaml.Node, key: str, problems: _Problems) -> float:
    try:
        if isinstance(node, yaml.ScalarNode):
            return float(node.value)
    except ValueError:
        pass
    problems.add(node, key, "expected a number")
    return 0.0


def _seq(node: yaml.Node, key: str, problems: _Problems) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        problems.add(node, key, "expected a list")
        return []
    return list(node.value)


def _str_list(node: yaml.Node, key: str, problems: _Problems) -> tuple[str, ...]:
    return tuple(_str(n, f"{key}[{i}]", problems) for i, n in enumerate(_seq(node, key, problems)))


def _choice(*allowed: str) -> Callable[[yaml.Node, str, _Problems], str]:
    def conv(node: yaml.Node, key: str, problems: _Problems) -> str:
        value = _str(node, key, problems)
        if value and value not in allowed:
            problems.add(node, key, f"must be one of {', '.join(allowed)} (got {value!r})")
        return value

    return conv


def _choices(*allowed: str) -> Callable[[yaml.Node, str, _Problems], tuple[str, ...]]:
    def conv(node: yaml.Node, key: str, problems: _Problems) -> tuple[str, ...]:
        items = _seq(node, key, problems)
        return tuple(_choice(*allowed)(n, f"{key}[{i}]", problems) for i, n in enumerate(items))

    return conv


def _triple(node: yaml.Node, key: str, problems: _Problems) -> tuple[float, float, float] | None:
    items = _seq(node, key, problems)
    if len(items) != 3:
        problems.add(node, key, "expected three values (x, y, z)")
        return None
    x, y, z = (_float(n, f"{key}[{i}]", problems) for i, n in enumerate(items))
    if min(x, y, z) <= 0:
        problems.add(node, key, "values must be positive")
    return (x, y, z)


def _int_triple(node: yaml.Node, key: str, problems: _Problems) -> tuple[int, int, int] | None:
    items = _seq(node, key, problems)
    if len(items) != 3:
        problems.add(node, key, "expected three integers (x, y, z)")
        return None
    x, y, z = (_int(n, f"{key}[{i}]", problems) for i, n in enumerate(items))
    if min(x, y, z) <= 0:
        problems.add(node, key, "values must be positive")
    return (x, y, z)


def _pair(node: yaml.Node, key: str, problems: _Problems) -> tuple[float, float]:
    items = _seq(node, key, problems)
    if len(items) != 2:
        problems.add(node, key, "expected two values [low, high]")
        return (-1024.0, 3071.0)
    low, high = (_float(n, f"{key}[{i}]", problems) for i, n in enumerate(items))
    if low >= high:
        problems.add(node, key, "low must be below high")
    return (low, high)


def _regex(node: yaml.Node, key: str, problems: _Problems) -> str:
    value = _str(node, key, problems)
    try:
        re.compile(value)
    except re.error as exc:
        problems.add(node, key, f"not a valid regular expression: {exc}")
    return value


def _code(node: yaml.Node, key: str, problems: _Problems) -> CodedConcept:
    m = _Map(node, key, problems)
    concept = CodedConcept(
        value=m.require("code", _str, ""),
        scheme=m.require("scheme", _str, ""),
        meaning=m.require("meaning", _str, ""),
    )
    m.done()
    return concept


def _color(node: yaml.Node, key: str, problems: _Problems) -> tuple[int, int, int] | None:
    items = _seq(node, key, problems)
    values = [_int(n, f"{key}[{i}]", problems) for i, n in enumerate(items)]
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        problems.add(node, key, "expected three integers 0-255 (R, G, B)")
        return None
    return (values[0], values[1], values[2])


# Section parsers.


def _model(m: _Map) -> ModelSpec:
    def tensor(name: str) -> TensorSpec:
        t = m.sub_map(name)
        if not m.has(name):
            m.problems.add(m.node, f"model.{name}", "required key is missing")
        spec = TensorSpec(t.require("name", _str, ""), t.get("datatype", _choice(*_DATATYPES), "FP32"))
        t.done()
        return spec

    spec = ModelSpec(
        name=m.require("name", _str, ""),
        version=str(m.get("version", _int, 0) or ""),
        input=tensor("input"),
        output=tensor("output"),
        classes=m.require("classes", _int, 2),
    )
    if spec.classes < 2 and m.has("classes"):
        m.problems.add(m.value_node("classes"), "model.classes", "a segmentation model has at least 2 classes")
    m.done()
    return spec


def _labels(node: yaml.Node | None, problems: _Problems, classes: int) -> tuple[LabelSpec, ...]:
    if node is None:
        return ()
    labels: list[LabelSpec] = []
    seen: set[int] = set()
    for i, item in enumerate(_seq(node, "labels", problems)):
        key = f"labels[{i}]"
        m = _Map(item, key, problems)
        label = LabelSpec(
            class_index=m.require("class", _int, 0),
            name=m.require("name", _str, ""),
            category=m.require("category", _code, CodedConcept("", "", "")),
            type=m.require("type", _code, CodedConcept("", "", "")),
            color=m.get("color", _color, None),
        )
        cls_node = m.value_node("class")
        # An invalid model.classes was already reported; checking against it would only add noise.
        if m.has("class") and classes >= 2 and not 1 <= label.class_index < classes:
            problems.add(cls_node, f"{key}.class", f"must be between 1 and model.classes - 1 ({classes - 1})")
        if label.class_index in seen:
            problems.add(cls_node, f"{key}.class", f"class {label.class_index} is listed twice")
        seen.add(label.class_index)
        m.done()
        labels.append(label)
    return tuple(labels)


def _reader(m: _Map) -> ReaderSettings:
    s = m.sub_map("series")
    rules = SeriesRules(
        modality=s.get("modality", _str, "CT"),
        image_type=s.get("image_type", _str_list, ()),
        min_slices=s.get("min_slices", _int, 1),
        description=s.get("description", _regex, None),
        choose=s.get("choose", _choice("largest", "first"), "largest"),  # type: ignore[arg-type]
    )
    s.done()
    settings = ReaderSettings(
        series=rules,
        geometry=m.get("geometry", _choice("warn", "error"), "warn"),  # type: ignore[arg-type]
        formats=m.get("formats", _choices("mhd", "nifti"), ("mhd", "nifti")),  # type: ignore[arg-type]
    )
    if not settings.formats:
        # The inference stage reads the volume from one of these files.
        m.problems.add(m.value_node("formats"), f"{m.key}.formats", "at least one format is required")
    return settings


def _inference(m: _Map) -> InferenceSettings:
    t = m.sub_map("triton")
    triton = TritonSettings(
        url=t.get("url", _str, "127.0.0.1:8000"),
        protocol=t.get("protocol", _choice("http", "grpc"), "http"),  # type: ignore[arg-type]
        shared_memory=t.get("shared_memory", _choice("auto", "system", "off"), "auto"),  # type: ignore[arg-type]
        timeout_s=t.get("timeout_s", _float, 120.0),
    )
    t.done()
    settings = InferenceSettings(
        triton=triton,
        spacing_mm=m.get("spacing_mm", _triple, None),
        size=m.get("size", _int_triple, None),
        clip_hu=m.get("clip_hu", _pair, (-1024.0, 3071.0)),
    )
    if (settings.spacing_mm is None) == (settings.size is None):
        m.problems.add(m.node, m.key, "set exactly one of spacing_mm or size (the model's input grid)")
    return settings


def _writer(m: _Map) -> WriterSettings:
    return WriterSettings(
        series_description=m.get("series_description", _str, "AI segmentation"),
        series_number=m.get("series_number", _int, 901),
        masks=m.get("masks", _choices("mhd", "nifti"), ()),  # type: ignore[arg-type]
        manufacturer=m.get("manufacturer", _str, "appliance"),
        algorithm_version=m.get("algorithm_version", _str, "1"),
    )


def _destinations(node: yaml.Node | None, problems: _Problems) -> tuple[Destination, ...]:
    if node is None:
        return ()
    out: list[Destination] = []
    for i, item in enumerate(_seq(node, "destinations", problems)):
        m = _Map(item, f"destinations[{i}]", problems)
        out.append(Destination(m.require("name", _str, ""), m.get("kind", _choice("dicom", "folder"), "dicom")))  # type: ignore[arg-type]
        m.done()
    return tuple(out)


def _stages(node: yaml.Node | None, problems: _Problems) -> tuple[list[str], dict[str, _Map]]:
    names: list[str] = []
    maps: dict[str, _Map] = {}
    for i, item in enumerate(_seq(node, "stages", problems) if node is not None else []):
        key = f"stages[{i}]"
        m = _Map(item, key, problems)
        name = m.require("stage", _choice(*_STAGE_NAMES), "")
        if name in maps:
            problems.add(item, f"{key}.stage", f"stage {name!r} appears twice")
        elif name in _STAGE_NAMES:
            names.append(name)
            maps[name] = m
    # The stages hand files to each other, so only the natural order makes sense.
    if names and names != [n for n in _STAGE_NAMES if n in names]:
        problems.add(node, "stages", f"stages must run in the order {' -> '.join(_STAGE_NAMES)}")
    return names, maps


def _line_of(problem: str) -> int:
    # Problems read "SOURCE:LINE: ..."; the source may itself contain colons.
    return int(problem.split(": ", 1)[0].rsplit(":", 1)[1])


def parse_workflow(text: str, source: str = "<string>") -> Workflow:
    """Parse and validate workflow YAML ``text``; ``source`` names it in error messages.

    Raises:
        WorkflowError: listing every problem as ``"SOURCE:LINE: KEY: message"``.
    """
    problems = _Problems(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise WorkflowError([f"{source}:{line}: (syntax): {exc}"]) from exc
    if root is None:
        raise WorkflowError([f"{source}:1: (top level): the file is empty"])
    top = _Map(root, "", problems)
    name = top.require("name", _str, "")
    description = top.get("description", _str, "")
    model = _model(top.sub_map("model")) if top.has("model") else None
    if model is None:
        top.require("model", _str, "")
    classes = model.classes if model else 2
    top.used.update({"labels", "stages", "destinations"})
    labels = _labels(top.value_node("labels"), problems, classes)
    if not labels:
        problems.add(top.value_node("labels") or root, "labels", "at least one label is required")
    names, stage_maps = _stages(top.value_node("stages"), problems)
    if not names:
        problems.add(top.value_node("stages") or root, "stages", "at least one stage is required")
    empty = _Map(yaml.MappingNode("tag:yaml.org,2002:map", [], root.start_mark, root.end_mark), "", problems)

    def section(stage: str) -> _Map:
        m = stage_maps.get(stage, empty)
        m.used.add("stage")
        return m

    reader_map, inference_map, writer_map = section("reader"), section("inference"), section("writer")
    reader = _reader(reader_map)
    inference = _inference(inference_map) if "inference" in stage_maps else InferenceSettings(spacing_mm=(1, 1, 1))
    writer = _writer(writer_map)
    for m in (reader_map, inference_map, writer_map):
        if m is not empty:
            m.done()
    destinations = _destinations(top.value_node("destinations"), problems)
    top.done()
    if problems.items:
        raise WorkflowError(sorted(problems.items, key=_line_of))
    assert model is not None  # a missing model was reported above
    return Workflow(
        name=name,
        description=description,
        model=model,
        labels=labels,
        reader=reader,
        inference=inference,
        writer=writer,
        stages=tuple(names),
        destinations=destinations,
        source=source,
    )


def load_workflow(path: str | Path) -> Workflow:
    """Load and validate the workflow file at ``path`` (see :func:`parse_workflow`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkflowError([f"{path}:1: (file): cannot read: {exc.strerror}"]) from exc
    return parse_workflow(text, str(path))


def _shipped_files() -> Iterator[Path]:
    folder = importlib.resources.files("appliance.workflows") / "definitions"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            yield Path(str(entry))


def shipped_workflows() -> dict[str, Workflow]:
    """The reference workflows packaged with the appliance, by name (OrganSeg, LiverSeg)."""
    return {wf.name: wf for wf in (load_workflow(p) for p in _shipped_files())}
