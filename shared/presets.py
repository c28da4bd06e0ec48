"""Named councils (``COUNCIL_PRESETS``): who sits on them, who chairs, and their quorums.

Each preset is offered to OpenAI-compatible clients as the model ``council/<name>``; the
roster's defaults are ``council/default``. Presets are validated at start against the roster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.roster import Roster, RosterError

MODEL_PREFIX = "council/"
DEFAULT_COUNCIL = "default"
PRESET_KEYS = frozenset({"members", "chairman", "min_answers", "min_ballots"})
PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class CouncilPreset:
    """A council offered as a model; quorums of ``None`` use the service's defaults."""

    name: str
    members: tuple[str, ...]
    chairman: str
    min_answers: int | None = None
    min_ballots: int | None = None

    @property
    def model_id(self) -> str:
        """Return the id clients name this council by."""
        return MODEL_PREFIX + self.name


def default_council(roster: Roster) -> CouncilPreset:
    """Return the roster's default members and chairman as the council ``council/default``."""
    return CouncilPreset(DEFAULT_COUNCIL, roster.members, roster.chairman)


def build_presets(options: Mapping[str, object], roster: Roster) -> dict[str, CouncilPreset]:
    """Validate ``COUNCIL_PRESETS`` against the roster; raise ``RosterError`` when it is wrong."""
    return {name: _preset(name, option, roster) for name, option in options.items()}


def _preset(name: str, option: object, roster: Roster) -> CouncilPreset:
    if not PRESET_NAME.match(name) or name == DEFAULT_COUNCIL:
        raise RosterError(f"council preset name {name!r} must be 1-64 letters, digits or ._- "
                          f"and not {DEFAULT_COUNCIL!r}")
    if not isinstance(option, Mapping):
        raise RosterError(f"council preset {name} must be an object")
    unknown = set(option) - PRESET_KEYS
    if unknown:
        raise RosterError(f"unknown keys in council preset {name}: {', '.join(sorted(unknown))}")
    members, chairman = option.get("members"), option.get("chairman")
    if (not isinstance(members, list) or len(members) < 2
            or not all(isinstance(m, str) for m in members) or len(set(members)) != len(members)):
        raise RosterError(f"council preset {name}: members must be at least two distinct ids")
    if not isinstance(chairman, str):
        raise RosterError(f"council preset {name}: chairman must be a model id")
    off_roster = roster.unknown([*members, chairman])
    if off_roster:
        raise RosterError(f"council preset {name}: not on the roster: {', '.join(off_roster)}")
    return CouncilPreset(
        name, tuple(members), chairman,
        _quorum(name, option.get("min_answers"), "min_answers", 2, len(members)),
        _quorum(name, option.get("min_ballots"), "min_ballots", 1, len(members)),
    )


def _quorum(name: str, value: object, key: str, least: int, most: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise RosterError(f"council preset {name}: {key} must be a whole number from {least} "
                          f"to its number of members ({most})")
    return value
