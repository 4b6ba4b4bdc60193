"""One exception type for every user-facing failure.

The CLI turns a ``TinyBeautyError`` into one line on stderr and a non-zero exit; anything else is a bug.
"""


class TinyBeautyError(Exception):
    """Bad input or a missing resource, described in one line a user can act on."""


class NoFaceError(TinyBeautyError):
    """No face was found in a photo (folder modes skip and list such photos)."""
