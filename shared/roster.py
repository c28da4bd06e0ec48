"""The council's roster: which models may sit on a council, and how to call each of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MODEL_OPTION_KEYS = frozenset(
    {"name", "timeout_s", "price_prompt", "price_completion", "rpm", "max_concurrency"}
)


class RosterError(ValueError):
    """The roster configuration is inconsistent."""


@dataclass(frozen=True)
class Model:
    """One model the council may call.

    Prices are US dollars per million tokens; ``timeout_s`` of ``None`` means the provider
    default (``PROVIDER_TIMEOUT``). ``rpm`` (requests per minute) and ``max_concurrency`` (calls
    in flight) are the provider's quota for this model across the whole fleet; ``None`` means
    no limit of ours.
    """

    id: str
    name: str
    timeout_s: float | None = None
    price_prompt: float = 0.0
    price_completion: float = 0.0

    def cost_of(self, usage: dict | None) -> float | None:
        """Return a call's cost in US dollars: the provider's figure, else from the prices."""
        if not usage:
            return None
        if usage.get("cost") is not None:
            return float(usage["cost"])
        if not (self.price_prompt or self.price_completion):
            return None
        return (usage.get("prompt_tokens", 0) * self.price_prompt
                + usage.get("completion_tokens", 0) * self.price_completion) / 1_000_000
    rpm: int | None = None
    max_concurrency: int | None = None


@dataclass(frozen=True)
class Roster:
    """The default members and chairman, and every model a request may choose from.

    ``chairman_fallbacks`` synthesise, in order, when the round's chairman fails.
    """

    members: tuple[str, ...]
    chairman: str
    models: Mapping[str, Model]
    chairman_fallbacks: tuple[str, ...] = ()

    def model(self, model_id: str) -> Model:
        """Return the model with this id; raise ``KeyError`` when it is not on the roster."""
        return self.models[model_id]

    def unknown(self, model_ids: Iterable[str]) -> list[str]:
        """Return the ids that are not on the roster, in the order given."""
        return [model_id for model_id in model_ids if model_id not in self.models]


def build_roster(
    members: Iterable[str],
    chairman: str,
    options: Mapping[str, Mapping] | None = None,
    chairman_fallbacks: Iterable[str] = (),
) -> Roster:
    """Build and validate a roster from member ids, a chairman id and per-model options."""
    members = tuple(members)
    fallbacks = tuple(chairman_fallbacks)
    if len(members) < 2:
        raise RosterError("a council needs at least two members")
    if len(set(members)) != len(members):
        raise RosterError("council members must be distinct")
    if len(set(fallbacks)) != len(fallbacks) or chairman in fallbacks:
        raise RosterError("chairman fallbacks must be distinct and differ from the chairman")
    options = options or {}
    ids = dict.fromkeys([*members, chairman, *fallbacks, *options])
    models = {model_id: _model(model_id, options.get(model_id, {})) for model_id in ids}
    return Roster(members=members, chairman=chairman, models=models, chairman_fallbacks=fallbacks)


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
            rpm=_count(option.get("rpm"), "rpm"),
            max_concurrency=_count(option.get("max_concurrency"), "max_concurrency"),
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


def _count(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1")
    return value


def _display_name(model_id: str) -> str:
    return model_id.rsplit("/", 1)[-1]
