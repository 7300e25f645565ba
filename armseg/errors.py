"""The one exception users see: a sentence, not a traceback."""


class ArmsegError(Exception):
    """A mistake the user can fix (bad file, parameter, name); the CLI prints it on one line."""
