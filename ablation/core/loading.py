"""Reading a study spec: YAML that refuses a key given twice, `--set KEY=VALUE` overrides, and
errors that name what to fix: the file, the key, or the --set a bad value came from."""

from __future__ import annotations

import copy
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ablation.core.model_spec import ModelSpec, Section, SpecError
from ablation.core.schema import DataSpec, StudySpec, describe, each_error, validation_context
from ablation.core.spec_tree import key_parts, set_key


def _blame(err: ValidationError, path: Path, file_tree: dict[str, Any], given: list[tuple[tuple[str, ...], str]]) -> str:
    """One line naming what to fix: each error under the --set it comes from, the others under the file."""
    by_origin: dict[str, list[str]] = {}
    for loc, part in each_error(err):
        by_origin.setdefault(_origin(loc, path, file_tree, given), []).append(part)
    return "; ".join(f"{origin}: {'; '.join(parts)}" for origin, parts in by_origin.items())


def _origin(loc: tuple[str, ...], path: Path, file_tree: dict[str, Any], given: list[tuple[tuple[str, ...], str]]) -> str:
    """The --set that put the value at `loc` (at or above it, or creating it), else the file."""
    for parts, text in reversed(given):  # a later --set of the same key replaced the earlier ones
        if loc[:len(parts)] == parts or (parts[:len(loc)] == loc and not _in_tree(file_tree, loc)):
            return f"--set {text}"
    return str(path)


def _in_tree(tree: Any, loc: tuple[str, ...]) -> bool:
    for part in loc:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"key {key!r} appears twice (lines {first} and {second}); keep one")
        self.key = key


# A spec is a page of YAML. Bounds, so that a wrong path (/dev/zero, a FIFO, a dataset) or a hostile
# file fails at once: 400 bytes of nested aliases stand for 400 million values, and validating such a
# file ran for minutes before writing a 2 GB error.
MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_NODES = 100_000


class _TooLarge(yaml.YAMLError):
    pass


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes `node` stands for once every alias in it is expanded; `sizes` memoises each node,
    so this takes time in the document's own size, not its expansion's."""
    if id(node) not in sizes:
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


class _SpecLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice in one mapping: PyYAML would keep the
    last one silently, so a second `train:` section would replace the first unnoticed. It also
    refuses a document whose aliases expand it past MAX_SPEC_NODES."""

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None and (size := _expanded_size(node, {})) > MAX_SPEC_NODES:
            raise _TooLarge(f"its aliases (*name) expand it to {size:,} values, more than the {MAX_SPEC_NODES:,} "
                            "a spec may hold")
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may give keys again: the mapping's own keys override merged ones
            key = self.construct_object(key_node, deep=True)
            try:
                if key in lines:
                    raise _DuplicateKey(key, lines[key], key_node.start_mark.line + 1)
                lines[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key, which construct_mapping reports
                pass
        return super().construct_mapping(node, deep)


# Dotted names, e.g. train.epochs or search.space.model.placement.
_KEY = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")


def parse_override(text: str) -> tuple[str, Any]:
    """`train.epochs=1` -> ("train.epochs", 1); the value is read as YAML, so types are checked."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=1")
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise SpecError(f"--set {text}: {key!r} is not a key; a key is names joined by dots, e.g. train.epochs "
                        "or search.space.model.placement")
    if not raw.strip():  # YAML would read it as null, which then looks like a fault of the spec file
        raise SpecError(f"--set {text}: the value is empty; give one, or write null for none")
    try:
        return key, yaml.load(raw, Loader=_SpecLoader)
    except _DuplicateKey as err:
        raise SpecError(f"--set {text}: key {err.key!r} appears twice; keep one") from None
    except yaml.YAMLError as err:
        raise SpecError(f"--set {key}: value {raw!r} is not valid YAML ({' '.join(str(err).split())})") from None


def _read_text(path: Path) -> str:
    """The spec file's text, from a regular file of at most MAX_SPEC_BYTES only."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise SpecError(f"{path}: is {kind}, not a spec file; expected a YAML file such as search_spaces/quickstart.yaml")
    with path.open("rb") as file:
        data = file.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: is larger than {MAX_SPEC_BYTES >> 20} MB; a spec is a page of YAML, is this the "
                        "right file?")
    return data.decode("utf-8")


def read_spec(path: Path, overrides: list[str] | tuple[str, ...] = (), *, data_on_disk: bool = True) -> StudySpec:
    """Read, override and validate a study spec (its trials are `core.study.Study`'s to expand)."""
    try:
        tree = yaml.load(_read_text(path), Loader=_SpecLoader)
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: expected UTF-8 text, but byte {err.start} (0x{err.object[err.start]:02x}) is not "
                        "UTF-8; save the file as UTF-8") from None
    except (_DuplicateKey, _TooLarge) as err:
        raise SpecError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(tree, dict):
        raise SpecError(f"{path}: expected a mapping of sections (name, model, data, train, search, ...)")
    file_tree = copy.deepcopy(tree)
    given = []  # (where in the tree, the --set text) of each override, so an error there names it, not the file
    for text in overrides:
        key, value = parse_override(text)
        try:
            set_key(tree, key, value)
        except SpecError as err:
            raise SpecError(f"--set {text}: {err}") from None
        given.append((key_parts(key), text))
    try:
        return StudySpec.model_validate(tree, context=validation_context(data_on_disk))
    except ValidationError as err:
        raise SpecError(_blame(err, path, file_tree, given)) from None


class _ModelAndData(Section):
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()


def read_sections(overrides: list[str] | tuple[str, ...] = ()) -> tuple[ModelSpec, DataSpec]:
    """The model and data sections of the defaults, with `overrides`: what `inspect` builds without a spec."""
    tree: dict[str, Any] = {}
    for text in overrides:
        set_key(tree, *parse_override(text))
    try:
        sections = _ModelAndData.model_validate(tree)
    except ValidationError as err:
        other_section = any(e["type"] == "extra_forbidden" and len(e["loc"]) == 1 for e in err.errors())
        hint = " (without a spec, only model.* and data.* apply)" if other_section else ""
        raise SpecError(f"--set: {describe(err)}{hint}") from None
    return sections.model, sections.data
