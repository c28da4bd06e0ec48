"""The council's roster: which models may sit on a council, and how to call each of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MODEL_OPTION_KEYS = frozenset({"name", "timeout_s", "price_prompt", "price_completion"})


class RosterError(ValueError):
    """The roster configuration is inconsistent."""


@dataclass(frozen=True)
class Model:
    """One model the council may call.

    Prices are US dollars per million tokens; ``timeout_s`` of ``None`` means the provider
    default (``PROVIDER_TIMEOUT``).
    """

    id: str
    name: str
    timeout_s: float | None = None
    price_prompt: float = 0.0
    price_completion: float = 0.0


@dataclass(frozen=True)
class Roster:
    """The default members and chairman, and every model a request may choose from."""

    members: tuple[str, ...]
    chairman: str
    models: Mapping[str, Model]

    def model(self, model_id: str) -> Model:
        """Return the model with this id; raise ``KeyError`` when it is not on the roster."""
        return self.models[model_id]

    def unknown(self, model_ids: Iterable[str]) -> list[str]:
        """Return the ids that are not on the roster, in the order given."""
        return [model_id for model_id in model_ids if model_id not in self.models]


def build_roster(
    members: Iterable[str], chairman: str, options: Mapping[str, Mapping] | None = None
) -> Roster:
    """Build and validate a roster from member ids, a chairman id and per-model options."""
    members = tuple(members)
    if len(members) < 2:
        raise RosterError("a council needs at least two members")
    if len(set(members)) != len(members):
        raise RosterError("council members must be distinct")
    options = options or {}
    ids = dict.fromkeys([*members, chairman, *options])
    models = {model_id: _model(model_id, options.get(model_id, {})) for model_id in ids}
    return Roster(members=members, chairman=chairman, models=models)


def _model(model_id: str, option: Mapping) -> Model:
    if not model_id or any(char.isspace() for char in model_id):
        raise RosterError(f"invalid model id {model_id!r}")
    if not isinstance(option, Mapping):
        raise RosterError(f"options for {model_id} must be an object")
    unknown = set(option) - MODEL_OPTION_KEYS
    if unknown:
        raise RosterError(f"unknown options for {model_id}: {', '.join(sorted(unknown))}")
    try:
        return Model(
            id=model_id,
            name=str(option.get("name") or _display_name(model_id)),
            timeout_s=_positive(option.get("timeout_s")),
            price_prompt=float(option.get("price_prompt", 0.0)),
            price_completion=float(option.get("price_completion", 0.0)),
        )
    except (TypeError, ValueError) as error:
        raise RosterError(f"bad options for {model_id}: {error}") from error


def _positive(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    if number <= 0:
        raise ValueError("timeout_s must be positive")
    return number


def _display_name(model_id: str) -> str:
    return model_id.rsplit("/", 1)[-1]
