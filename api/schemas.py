"""Request bodies, validated with marshmallow; unknown fields are refused."""

from __future__ import annotations

import re

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from shared.callbacks import CallbackRefused, check_callback_url
from shared.records import COUNCIL, MODES, PRIORITIES, TITLE_CHARS
from shared.settings import Settings

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_MEMBERS = 12
DELETE_ALL_CONFIRMATION = "delete all my sessions"


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
    """A new session: a question, who sits on the council, and how the session runs."""

    members = fields.List(
        fields.String(), validate=validate.Length(min=2, max=MAX_MEMBERS), load_default=None
    )
    chairman = fields.String(load_default=None)
    mode = fields.String(validate=validate.OneOf(MODES), load_default=COUNCIL)
    priority = fields.String(validate=validate.OneOf(PRIORITIES), load_default=None)
    callback_url = fields.String(load_default=None)
    title = fields.String(validate=validate.Length(min=1, max=TITLE_CHARS), load_default=None)
    # Quorums: answers needed to rank them, valid ballots needed to aggregate a ranking.
    min_answers = fields.Integer(strict=True, validate=validate.Range(min=2), load_default=None)
    min_ballots = fields.Integer(strict=True, validate=validate.Range(min=1), load_default=None)

    def __init__(self, settings: Settings, **kwargs) -> None:
        super().__init__(settings.max_question_chars, **kwargs)
        self.roster = settings.roster
        self.allow_private_callbacks = settings.webhook_allow_private

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

    @validates("callback_url")
    def _check_callback(self, value: str | None, **_: object) -> None:
        if value is None:
            return
        try:
            check_callback_url(value, self.allow_private_callbacks)
        except CallbackRefused as error:
            raise ValidationError(str(error)) from error

    @validates("title")
    def _check_title(self, value: str | None, **_: object) -> None:
        if value is not None:
            _text_without_controls(value)

    @validates_schema
    def _check_quorums(self, data: dict, **_: object) -> None:
        council = len(data.get("members") or self.roster.members)
        for name in ("min_answers", "min_ballots"):
            if (data.get(name) or 0) > council:
                raise ValidationError(f"must be at most the council's size ({council})", name)

    def _check_on_roster(self, model_ids: list[str]) -> None:
        unknown = self.roster.unknown(model_ids)
        if unknown:
            raise ValidationError(f"not on the roster: {', '.join(unknown)}")


class SessionPatchSchema(Schema):
    """What a client may change on a session: its title and whether it is pinned."""

    class Meta:
        unknown = RAISE

    title = fields.String(validate=validate.Length(min=1, max=TITLE_CHARS))
    pinned = fields.Boolean(truthy={True}, falsy={False})

    @validates("title")
    def _check_title(self, value: str, **_: object) -> None:
        if not value.strip():
            raise ValidationError("must not be empty")
        _text_without_controls(value)


class DeleteAllSchema(Schema):
    """Deleting every session needs the caller to say so in words."""

    class Meta:
        unknown = RAISE

    confirm = fields.String(required=True, validate=validate.Equal(
        DELETE_ALL_CONFIRMATION, error=f"must be exactly {DELETE_ALL_CONFIRMATION!r}"))


class BranchSchema(Schema):
    """Start a new session from the rounds up to ``round_no``, optionally with a new question."""

    class Meta:
        unknown = RAISE

    round_no = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    question = fields.String(load_default=None)
