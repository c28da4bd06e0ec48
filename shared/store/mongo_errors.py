"""Turn the MongoDB driver's errors into the store's own."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from pymongo.errors import ConnectionFailure, ExecutionTimeout

from shared.store.base import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")


def reachable(method: Callable[P, T]) -> Callable[P, T]:
    """Turn a lost or slow MongoDB connection into ``StoreUnavailable``."""

    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except (ConnectionFailure, ExecutionTimeout) as error:
            raise StoreUnavailable(f"MongoDB store: {error}") from error

    return guarded
