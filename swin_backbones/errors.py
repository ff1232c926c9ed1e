"""The error a backbone's constructor raises for an argument it cannot take."""


class ConfigError(ValueError, AssertionError):
    """A constructor argument that is invalid or that this package cannot honour, named in the message.

    It is a ValueError, and an AssertionError as well, because mmdet's, mmseg's and mmpretrain's backbones
    reject bad arguments with ``assert``: code written against them that catches AssertionError catches
    this package's errors too.
    """
