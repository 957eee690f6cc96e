"""Fast styles: feed-forward style transfer (Johnson, Alahi & Fei-Fei 2016).

A small image-transformation network is trained once per style with the engine's losses
(:func:`train`, :func:`train_files`) and then stylizes any photo in one forward pass
(:func:`stylize_fast`, :func:`stylize_fast_files`)::

    from nst_core.fast import TrainingSettings, train_files, stylize_fast_files
    train_files("starry_night.jpg", "photos/", "starry.nst", settings=TrainingSettings(steps=1000))
    stylize_fast_files("photo.jpg", "starry.nst", "out.png")

Model files (``.nst``) load with ``torch.load(weights_only=True)``; see :mod:`.model_file`.
Models in the models folders (:func:`model_folders`) can be named without their path.
"""

from .apply import stylize_fast, stylize_fast_files
from .folders import default_models_folder, find_model, list_models, model_folders
from .model_file import FastModel, FastModelInfo, load_model, save_model
from .network import DEFAULT_SHAPE, NetworkShape, TransformNet
from .training import TrainingResult, TrainingSettings, list_photos, train, train_files, training_config

__all__ = [
    "DEFAULT_SHAPE",
    "FastModel",
    "FastModelInfo",
    "NetworkShape",
    "TrainingResult",
    "TrainingSettings",
    "TransformNet",
    "default_models_folder",
    "find_model",
    "list_models",
    "list_photos",
    "load_model",
    "model_folders",
    "save_model",
    "stylize_fast",
    "stylize_fast_files",
    "train",
    "train_files",
    "training_config",
]
