"""ablate: distributed ablation studies of attention modules (Identity-CBAM) in ResNets.

Importing the package is cheap; torch, Ray and MLflow load only in the modules that need them, and
the study API (`ablation.load_study`, `ablation.Study`, from `ablation.core`) loads on first use, so
that `ablate --help` builds no schema.
"""

__version__ = "0.1.0"
__all__ = ["Study", "load_study", "__version__"]


def __getattr__(name: str):
    if name in ("Study", "load_study"):
        from ablation import core

        return getattr(core, name)
    raise AttributeError(f"module 'ablation' has no attribute {name!r}")
