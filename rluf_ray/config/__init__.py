"""The one typed configuration of rluf-ray.

Every YAML file under ``rluf_ray/configs`` is an instance of :class:`RlufConfig`; unknown keys are
rejected and every field carries a description. ``load(path, overrides)`` is the only way the CLI
builds a config. Defaults match the original research project's configuration.

The package owns three things, each in its own modules:

* the schema, one module per section (``model``, ``data``, ``training`` (``sft``, ``dpo``, LoRA),
  ``generation``, ``judge``, ``conformal``, ``feedback`` (with ``weights``), ``evaluation`` (with
  ``inference``), ``resources``, ``tracking``), all on the base in ``section``, gathered by
  ``schema.RlufConfig``;
* the stage-key policy (``keys``): the operational keys no stage hashes; and typed plans
  (``plan_keys``): ``plan_type`` declares a frozen plan, ``operational`` a field its key leaves out,
  ``plan_key`` the hash a stage's manifest records;
* loading (``loading``): YAML files, ``KEY=VALUE`` overrides, validation with one-line errors.

It imports pydantic, PyYAML, the standard library and ``rluf_ray.data.embedded`` (the names of the
embedded models) only; no Ray, no stage, no I/O beyond reading a YAML file. Import from the package
(``from rluf_ray.config import X``): these re-exports are its public names.
"""

from __future__ import annotations

from rluf_ray.config.conformal import ConformalConfig, WeightsRange
from rluf_ray.config.data import DataConfig, DemoDataConfig, TldrConfig
from rluf_ray.config.evaluation import EvaluationConfig, InferenceConfig
from rluf_ray.config.feedback import FeedbackConfig, WeightsConfig
from rluf_ray.config.generation import GenerationConfig
from rluf_ray.config.judge import (
    JudgeConfig,
    JudgeTemplates,
    PairwiseTemplate,
    PriceConfig,
    RubricTemplate,
    ScoreTemplate,
)
from rluf_ray.config.keys import (
    OPERATIONAL_KEYS,
    get_value,
    is_operational,
    leaf_keys,
    select,
)
from rluf_ray.config.loading import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    ConfigError,
    apply_overrides,
    from_dict,
    load,
    parse_override,
    read_yaml,
    with_values,
)
from rluf_ray.config.model import ModelConfig
from rluf_ray.config.plan_keys import operational, plan_data, plan_key, plan_key_data, plan_type
from rluf_ray.config.resources import ResourcesConfig
from rluf_ray.config.schema import RlufConfig, Section
from rluf_ray.config.tracking import TrackingConfig
from rluf_ray.config.training import DpoConfig, LoraConfig, SftConfig, TrainingSection

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "OPERATIONAL_KEYS",
    "ConfigError",
    "ConformalConfig",
    "DataConfig",
    "DemoDataConfig",
    "DpoConfig",
    "EvaluationConfig",
    "FeedbackConfig",
    "GenerationConfig",
    "InferenceConfig",
    "JudgeConfig",
    "JudgeTemplates",
    "LoraConfig",
    "ModelConfig",
    "PairwiseTemplate",
    "PriceConfig",
    "ResourcesConfig",
    "RlufConfig",
    "RubricTemplate",
    "ScoreTemplate",
    "Section",
    "SftConfig",
    "TldrConfig",
    "TrackingConfig",
    "TrainingSection",
    "WeightsConfig",
    "WeightsRange",
    "apply_overrides",
    "from_dict",
    "get_value",
    "is_operational",
    "leaf_keys",
    "load",
    "operational",
    "parse_override",
    "plan_data",
    "plan_key",
    "plan_key_data",
    "plan_type",
    "read_yaml",
    "select",
    "with_values",
]
