"""Dotted keys in a spec's tree (`model.placement`, `data.augment.rotation`, `model.reduction.layer3`):
where a key sits, and setting one, as a `--set` and each arm's overrides do before the spec is validated."""

from __future__ import annotations

from typing import Any

from ablation.core.model_spec import PER_STAGE, ModelSpec, SpecError, all_stages
from ablation.core.sites import STAGES, switch_stage


def key_parts(key: str) -> tuple[str, ...]:
    """Where a dotted key sits in the spec tree; the keys of search.space and search.baseline are dotted themselves."""
    for mapping in ("space", "baseline"):
        if key.startswith(f"search.{mapping}."):
            return "search", mapping, key.removeprefix(f"search.{mapping}.")
    return tuple(key.split("."))


def set_key(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in a spec's tree (a `--set`, or an arm's override), making sections as needed."""
    *parents, leaf = key_parts(key)
    if parents == ["model", "placement"]:  # one stage switched on or off in the placement the tree has
        model, default = tree.setdefault("model", {}), {k: f.default for k, f in ModelSpec.model_fields.items()}
        try:
            model["placement"] = switch_stage(str(model.get("placement", default["placement"])), leaf, value,
                                              all_stages(model.get("attention", default["attention"])))
        except ValueError as err:
            raise SpecError(f"{key}: {err}") from None
        return
    node = tree
    for depth, part in enumerate(parents):
        if depth == 1 and parents[0] == "model" and part in PER_STAGE and not isinstance(node.get(part), dict):
            # One stage of a setting given for all stages: spell the setting out per stage first.
            everywhere = node.get(part, ModelSpec.model_fields[part].default)
            node[part] = dict.fromkeys(STAGES, everywhere)
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(f"{key}: {part!r} is not a section")
        node = child
    node[leaf] = value
