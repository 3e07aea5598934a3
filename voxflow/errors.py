"""The one exception type for user-facing errors (bad config, bad input files)."""


class VoxflowError(Exception):
    """An error caused by user input; its message names the file, key or line at fault."""
