"""The model: encoders -> concatenate -> normalise -> heads (:mod:`.classifier`, :mod:`.heads`), and its folder
format (:mod:`.io`)."""
from __future__ import annotations

from .classifier import FINETUNE, NORMALIZE, EmotionClassifier
from .familiar import FAMILIARITY_FILE, Familiarity
from .heads import linear_head, speaker_normalize
from .io import CONFIG_FILE, FORMAT, WEIGHTS_FILE, ModelConfig, edit_config, load_model, model_config, save_model, software_versions

__all__ = ["CONFIG_FILE", "FAMILIARITY_FILE", "Familiarity", "FINETUNE", "FORMAT", "NORMALIZE", "WEIGHTS_FILE", "EmotionClassifier", "ModelConfig",
           "edit_config", "linear_head", "load_model", "model_config", "save_model", "software_versions", "speaker_normalize"]
