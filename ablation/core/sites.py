"""Where attention modules go in a ResNet: a whole stage, or one block of it, spelled `layer3` or
`layer3.2` (0-based), joined by `+` into a placement; `none` and `all` are placements too. `all` is
the attention type's own sites (`AttentionType.all_stages`): every stage for most, BAM's between-stage
bottlenecks (layer1-3) for BAM, so the same spelling means each module where its authors put it."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

# torchvision's stage names, which its state dicts (and pretrained weights) are keyed by.
STAGES = ("layer1", "layer2", "layer3", "layer4")


class Site(NamedTuple):
    stage: str
    block: int | None = None

    def __str__(self) -> str:
        return self.stage if self.block is None else f"{self.stage}.{self.block}"


def parse_placement(placement: str, layers: Sequence[int] | None = None, arch: str = "",
                    everywhere: Sequence[str] = STAGES) -> tuple[Site, ...]:
    """`none` -> (), `all` -> the stages of `everywhere` (every stage unless the attention type says
    otherwise), `layer3+layer1.0` -> those sites in network order.

    With `layers` (the blocks of each stage of `arch`), block indices are checked against them.
    """
    if placement == "none":
        return ()
    if placement == "all":
        return tuple(Site(s) for s in everywhere)
    sites = []
    for item in placement.split("+"):
        stage, dot, block = item.partition(".")
        if stage not in STAGES or (dot and not block.isdigit()):
            raise ValueError(
                f"{placement!r} is not a placement; expected 'none', 'all' or sites joined by '+': a stage "
                f"({', '.join(STAGES)}) or one block of it, 0-based (e.g. 'layer1+layer3.2')"
            )
        sites.append(Site(stage, int(block) if dot else None))
    if len(set(sites)) != len(sites):
        raise ValueError(f"{placement!r} names a site twice")
    for site in sites if layers is not None else ():
        blocks = layers[STAGES.index(site.stage)]
        if site.block is not None and site.block >= blocks:
            raise ValueError(f"{site}: {arch} {site.stage} has {blocks} blocks, numbered 0 to {blocks - 1}")
    return tuple(sorted(sites, key=lambda s: (STAGES.index(s.stage), s.block is None, s.block or 0)))


def format_placement(sites: tuple[Site, ...], spell_all: bool = True) -> str:
    """The canonical spelling of a placement, so equal placements get equal trial ids: `all` for every
    stage if `spell_all`. A caller turns it off where `all` would not mean every stage (BAM's `all`
    is three), so sites spelled out keep their meaning whichever attention type an arm ends up with."""
    if not sites:
        return "none"
    if spell_all and sites == tuple(Site(s) for s in STAGES):
        return "all"
    return "+".join(str(s) for s in sites)


def placement_subsets(subsets_of: list[str], size: int | list[int] | None = None) -> list[str]:
    """`{subsets_of: [layer1, layer2, layer3], size: [1, 2]}` -> every placement of that many of those sites."""
    if not isinstance(subsets_of, list) or not subsets_of:
        raise ValueError("subsets_of: expected a list of sites, e.g. [layer1, layer2, layer3, layer4]")
    sites = parse_placement("+".join(str(s) for s in subsets_of))
    sizes = range(1, len(sites) + 1) if size is None else [size] if isinstance(size, int) else size
    if any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(sites) for k in sizes):
        raise ValueError(f"size: expected subset sizes between 0 and {len(sites)}, got {size!r}")
    # Spelled out, never `all`: what `all` stands for depends on the attention type, which the model
    # section's validation knows (and which spells every placement canonically for it).
    return list(dict.fromkeys(format_placement(c, spell_all=False) for k in sizes
                              for c in itertools.combinations(sites, k)))


def switch_stage(placement: str, stage: str, on: bool, everywhere: Sequence[str] = STAGES) -> str:
    """`placement` with modules at the whole of `stage` (on) or nowhere in it (off), the other stages
    as they were: what a stage factor (`model.placement.layer3: [off, on]`) makes of the spec's placement.
    Spelled as the model section spells it, so the arm's label and its trial agree."""
    if stage not in STAGES:
        raise ValueError(f"{stage!r} is not a stage; expected one of {', '.join(STAGES)}")
    if not isinstance(on, bool):
        raise ValueError(f"expected on or off (true or false), got {on!r}")
    kept = [s for s in parse_placement(placement, everywhere=everywhere) if s.stage != stage]
    sites = parse_placement("+".join(str(s) for s in [*kept, *[Site(stage)] * on])) if kept or on else ()
    return format_placement(sites, spell_all=tuple(everywhere) == STAGES)
