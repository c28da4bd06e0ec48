"""Request bodies, validated with marshmallow; unknown fields are refused."""

from __future__ import annotations

import re

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from shared.roster import Roster

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_MEMBERS = 12


def _text_without_controls(value: str) -> None:
    if CONTROL_CHARS.search(value):
        raise ValidationError("must not contain control characters")


class QuestionSchema(Schema):
    """A question for the council; its maximum length comes from the settings."""

    class Meta:
        unknown = RAISE

    question = fields.String(required=True)

    def __init__(self, max_question_chars: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_question_chars = max_question_chars

    @validates("question")
    def _check_question(self, value: str, **_: object) -> None:
        if not value.strip():
            raise ValidationError("must not be empty")
        if len(value) > self.max_question_chars:
            raise ValidationError(f"must be at most {self.max_question_chars} characters")
        _text_without_controls(value)


class SessionCreateSchema(QuestionSchema):
    """A new session: a question, and optionally who sits on the council."""

    members = fields.List(
        fields.String(), validate=validate.Length(min=2, max=MAX_MEMBERS), load_default=None
    )
    chairman = fields.String(load_default=None)

    def __init__(self, max_question_chars: int, roster: Roster, **kwargs) -> None:
        super().__init__(max_question_chars, **kwargs)
        self.roster = roster

    @validates("members")
    def _check_members(self, value: list[str] | None, **_: object) -> None:
        if value is None:
            return
        if len(set(value)) != len(value):
            raise ValidationError("members must be distinct")
        self._check_on_roster(value)

    @validates("chairman")
    def _check_chairman(self, value: str | None, **_: object) -> None:
        if value is not None:
            self._check_on_roster([value])

    def _check_on_roster(self, model_ids: list[str]) -> None:
        unknown = self.roster.unknown(model_ids)
        if unknown:
            raise ValidationError(f"not on the roster: {', '.join(unknown)}")
