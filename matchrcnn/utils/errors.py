"""The error of a setting the user chose that cannot work.

Command-line tools report it (with the project's other input errors: ConfigError,
ImageInputError, GalleryError, WeightsError, ...) as one ``error: ...`` line; every other
exception is a bug and keeps its traceback, so code checking what a user typed raises this,
never a bare ValueError.
"""


class UsageError(ValueError):
    """An option or setting that cannot work as given; the message names it and says why."""
