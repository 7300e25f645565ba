"""The one exception users see: a sentence, not a traceback."""


class ArmsegError(Exception):
    """A mistake the user can fix (bad file, parameter, name); the CLI prints it on one line."""


class ParameterError(ArmsegError):
    """A parameter value wrong in itself. `names` says which parameters and `why` what is wrong,
    so a caller that read them from a file (an OpenArm ini) can name the file and section
    instead of a flag the user never typed."""

    def __init__(self, message: str, names: tuple[str, ...], why: str):
        super().__init__(message)
        self.names = names
        self.why = why
