"""YAML configs: the schema (one dataclass per section), defaults, presets, overrides, validation.

``load_config`` reads a file or preset with ``-o`` overrides; ``load_resolved`` reads a run's saved
``config.yaml``; ``dump_config`` writes one. The runtime config is a plain nested dict whose
defaults (:data:`DEFAULTS`) come from :mod:`taichi_syncnerf.config.schema`; docs/CONFIG.md is
generated from the same schema by ``python -m taichi_syncnerf.config.docs --write``.
"""
from taichi_syncnerf.config.load import (DEFAULTS, apply_overrides, deep_merge, dump_config, load_config,
                                         load_resolved, migrate, parse_override, resolve_config_path)
from taichi_syncnerf.config.schema import (FREE_MAPPINGS, GENERATE_ENCODINGS, GENERATE_FAMILIES, GENERATE_KEYS,
                                           MODEL_KINDS, MOVED_KEYS, RETIRED_KEYS, SCHEDULES, SECTIONS_OF_KIND,
                                           Config)
from taichi_syncnerf.config.validate import validate

__all__ = ["DEFAULTS", "Config", "FREE_MAPPINGS", "GENERATE_ENCODINGS", "GENERATE_FAMILIES", "GENERATE_KEYS",
           "MODEL_KINDS", "MOVED_KEYS", "RETIRED_KEYS", "SCHEDULES", "SECTIONS_OF_KIND", "apply_overrides",
           "deep_merge", "dump_config", "load_config", "load_resolved", "migrate", "parse_override",
           "resolve_config_path", "validate"]
