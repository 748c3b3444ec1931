"""Hydra instantiation that keeps laser's one-line config errors intact."""

from __future__ import annotations

from typing import Any

from laser.errors import LaserConfigError


def instantiate(node: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, but a `LaserConfigError` raised by a target comes out as itself,
    not wrapped in Hydra's multi-line `InstantiationException` (so `main` prints it as one line)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while isinstance(cause, InstantiationException):  # nested targets wrap more than once
            cause = cause.__cause__
        if isinstance(cause, LaserConfigError):
            raise cause from None
        raise
