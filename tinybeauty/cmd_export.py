"""Placeholder: this command group is being built (see the open issues)."""


def register(sub) -> None:
    pass
