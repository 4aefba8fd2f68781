"""ablate: distributed ablation studies of attention modules (Identity-CBAM) in ResNets.

Importing the package is cheap; torch, Ray and MLflow load only in the modules that need them.
"""

__version__ = "0.1.0"
