"""The attention types a study can ask for, each described by its options and components, and
registered by name. Their modules (`ablation.models`) are built from these options; nothing here
builds one, so a spec can be checked and priced without torch.

Types that share an option declare it alike (one `model.reduction`, whoever reads it).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ablation.core.catalog import ATTENTIONS, AttentionType, Options, reduction

# CBAM's gates, in the order they run; `parallel` applies both to the same input.
GATE_ORDERS = ("channel+spatial", "spatial+channel", "parallel", "channel", "spatial")
# BAM as its official code computes it (branch logits multiplied) or as its paper writes it (added).
BAM_VARIANTS = ("official", "paper")


class CBAMOptions(Options):
    reduction: int | dict[str, int] = reduction()
    kernel_size: Literal[3, 5, 7] = Field(7, description="spatial-gate convolution size")
    pooling: Literal["avg", "max", "avg+max"] = Field("avg+max", description="channel-gate descriptors")
    gates: Literal[GATE_ORDERS] = Field(  # type: ignore[valid-type]
        "channel+spatial", description="which CBAM gates, in which order, or both on the same input (parallel)")
    channel_gate: bool = Field(True, description="the channel gate (or branch)")
    spatial_gate: bool = Field(True, description="the spatial gate (or branch)")


class IdentityCBAMOptions(CBAMOptions):
    bottleneck: bool = Field(True, description="Identity-CBAM's residual branch (off: CBAM on the input)")
    skip: bool = Field(True, description="Identity-CBAM's identity connection")


class SEOptions(Options):
    reduction: int | dict[str, int] = reduction()


class BAMOptions(Options):
    reduction: int | dict[str, int] = reduction()
    dilated_convs: int = Field(2, ge=1, le=4, description="BAM's dilated 3x3 convolutions in the spatial branch")
    dilation: int = Field(4, ge=1, le=8, description="BAM's dilation of those convolutions")
    variant: Literal[BAM_VARIANTS] = Field(  # type: ignore[valid-type]
        "official", description="BAM as its official code computes it (branch logits multiplied) or as its "
                                "paper's Eqs. 2-4 write it (added, each branch ending in BN)")
    channel_gate: bool = Field(True, description="the channel gate (or branch)")
    spatial_gate: bool = Field(True, description="the spatial gate (or branch)")

    retired: ClassVar[dict[str, str]] = {
        "combine": "replaced by model.variant: official (the official code, branch logits multiplied: "
                   "combine=product) or paper (the paper's Eqs. 2-4, added, each branch ending in BN); "
                   "combine=sum, added without those BNs, was neither"}


ATTENTIONS.register("identity_cbam", AttentionType(
    site="stage", options=IdentityCBAMOptions, components=("bottleneck", "skip", "channel_gate", "spatial_gate"),
    summary="the paper's module, after the placed stages or blocks"))
ATTENTIONS.register("cbam", AttentionType(
    site="block", options=CBAMOptions, components=("channel_gate", "spatial_gate"),
    summary="CBAM (Woo et al.) on the residual branch of every block"))
ATTENTIONS.register("se", AttentionType(
    site="block", options=SEOptions, summary="Squeeze-and-Excitation (Hu et al.) in every block"))
ATTENTIONS.register("eca", AttentionType(site="block", summary="ECA (Wang et al.) in every block"))
ATTENTIONS.register("bam", AttentionType(
    site="stage", options=BAMOptions, components=("channel_gate", "spatial_gate"),
    summary="BAM (Park et al.) after the placed stages or blocks (placement all: after layer1-3)",
    all_stages=("layer1", "layer2", "layer3")))
