"""One GANomaly run: train a teacher or distil a student for one dataset and normal class; the glue that the
command line, the demo, the sweep and the examples share. Every result carries its resolved config.

``config`` (:class:`RunConfig`, config files, overrides), ``train`` (:func:`run`: the engine, the run folder,
resume), ``model_file`` (:func:`save_model`, :func:`load_model`).
"""
from .config import (EXECUTION_FIELDS, METHODS, RECIPE_METHODS, RUN_FILES, SCHEDULE_METHODS, ConfigError, RunConfig,
                     apply_overrides, channels_last_networks, check_device, config_differences, read_config_file)
from .model_file import MODEL_FORMAT, SWEEP_TEACHER_FORMAT, load_model, read_model_file, save_model
from .train import auroc_skip_reason, build_gan, load_run_data, make_hooks, run, save_json

__all__ = ["EXECUTION_FIELDS", "METHODS", "MODEL_FORMAT", "RECIPE_METHODS", "RUN_FILES", "SCHEDULE_METHODS",
           "SWEEP_TEACHER_FORMAT", "ConfigError", "RunConfig", "apply_overrides", "auroc_skip_reason", "build_gan",
           "channels_last_networks", "check_device", "config_differences", "load_model", "load_run_data",
           "make_hooks", "read_config_file", "read_model_file", "run", "save_json", "save_model"]
