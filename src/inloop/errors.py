"""Exceptions the CLI turns into a one-line message and a non-zero exit."""


class InloopError(Exception):
    """Base class: an error the user can fix (bad file, bad param, missing tool)."""


class YuvError(InloopError, ValueError):
    """A raw YUV / y4m file or name that does not match what was declared."""


class CodecError(InloopError, RuntimeError):
    """A codec binary is missing, failed, or produced unusable output."""


class ParamsError(InloopError, KeyError):
    """A params.yaml key is missing or has a bad value."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
