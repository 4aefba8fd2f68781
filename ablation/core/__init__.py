"""The light core: what a study is, described without building anything. It imports no torch, MLflow
or Ray, so a spec loads, validates, expands and prices in a fraction of a second, in a notebook too.

From the bottom up:

- `registry`, `sites`, `emotions`, `cache`: names and small helpers;
- `catalog`, `attentions`, `datasets`: what the models and datasets offer, each entry describing itself;
- `names`: the run contract's names (tags, params, metric keys) that engine, tracking and report share;
- `model_spec`, `schema`, `spec_errors`: the study spec's schema, and its errors in the spec's words;
- `spec_tree`: dotted keys (`model.reduction.layer3`) set in a spec's tree before it is validated;
- `factorial`, `design`: two-level designs (their runs and aliases); every design's arms and trials;
- `loading`: YAML, `--set` overrides, errors naming what to fix;
- `study`: the `Study` value, built once.
"""

from ablation.core.design import Trial, label
from ablation.core.loading import parse_override
from ablation.core.model_spec import ModelSpec, SpecError
from ablation.core.schema import AugmentSpec, DataSpec, RaceSpec, SearchSpec, StudySpec, json_schema
from ablation.core.study import Study, load_model_and_data, load_spec, load_study

__all__ = ["AugmentSpec", "DataSpec", "ModelSpec", "RaceSpec", "SearchSpec", "SpecError", "Study", "StudySpec", "Trial",
           "json_schema", "label", "load_model_and_data", "load_spec", "load_study", "parse_override"]
