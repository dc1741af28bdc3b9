"""Errors ledviz raises for bad input: each message names the problem and the fix."""


class LedvizError(Exception):
    """Base class of every error ledviz raises on purpose."""


class ConfigError(LedvizError, ValueError):
    """A configuration value is invalid."""


class CheckpointError(LedvizError, OSError):
    """A checkpoint is missing, unreadable, or does not fit the configuration."""


class InputError(LedvizError, ValueError):
    """Model input that cannot be run as given (shapes, lengths, empty text)."""


class GenerationSettingsError(LedvizError, ValueError):
    """Unknown or contradictory generation settings."""


class WeightShapeError(CheckpointError, RuntimeError):
    """A checkpoint's weight has another shape than the model's (a RuntimeError too, as transformers raises)."""
