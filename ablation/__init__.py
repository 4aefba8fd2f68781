"""ablate: distributed ablation studies of attention modules (Identity-CBAM) in ResNets.

Importing the package is cheap; torch, Ray and MLflow load only in the modules that need them.
"""

__version__ = "0.1.0"

from ablation.core import Study, load_study  # noqa: E402  (the API a notebook uses; light: no torch, MLflow or Ray)

__all__ = ["Study", "load_study", "__version__"]
