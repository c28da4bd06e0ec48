"""Sessions as Markdown: answers, the ranking table and the synthesis, with text made safe.

User text (titles, questions) is escaped for Markdown and HTML so it renders as the words it is;
model output keeps its Markdown but has HTML escaped, so no renderer can run markup from it.
"""

from __future__ import annotations

import html
import re

MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")


def escape_text(text: str) -> str:
    """Return user text that Markdown and HTML renderers show literally."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def escape_model_output(text: str) -> str:
    """Return model output with its Markdown intact and any HTML neutralised."""
    return html.escape(text, quote=False)


def session_markdown(body: dict) -> str:
    """Render a session (as ``api.present.session_body`` shows it) as a Markdown document."""
    lines = [f"# {escape_text(body['title'])}", "",
             f"Session `{body['id']}` · created {body['created_at']} · status {body['status']}",
             ""]
    for round_ in body["rounds"]:
        lines += _round_markdown(round_)
    usage = body["usage"]
    lines += ["## Usage", "", _usage_line(usage), ""]
    return "\n".join(lines)


def _round_markdown(round_: dict) -> list[str]:
    lines = [f"## Round {round_['round_no']}: {escape_text(round_['question'])}", "",
             f"Status: {round_['status']}", ""]
    lines += ["### Answers", ""]
    for answer in round_["answers"]:
        text = escape_model_output(answer["content"]) if answer["content"] else (
            f"_No answer: {escape_text(answer['error'] or 'unknown error')}_")
        lines += [f"#### {escape_text(answer['name'])}", "", text, ""]
    if round_["aggregate"]:
        lines += ["### Ranking", "", *ranking_table(round_["aggregate"]), ""]
    for note in round_["notes"]:
        lines.append(f"> Note: {escape_text(note)}")
    synthesis = round_["synthesis"]
    if synthesis and synthesis["content"]:
        lines += ["", f"### Final answer ({escape_text(synthesis['name'])})", "",
                  escape_model_output(synthesis["content"]), ""]
    elif round_["error"]:
        lines += ["", f"_The round {round_['status']}: {escape_text(round_['error'])}_", ""]
    return lines


def ranking_table(standings: list[dict]) -> list[str]:
    """Return the aggregate ranking as Markdown table rows."""
    rows = ["| Rank | Member | Mean rank | Ballots | Disagreement |",
            "|---:|---|---:|---:|---:|"]
    for standing in standings:
        rows.append(
            f"| {standing['rank']} | {escape_text(standing['name'])} "
            f"| {_number(standing['mean_rank'])} | {standing['ballots']} "
            f"| {_number(standing['disagreement'])} |"
        )
    return rows


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _usage_line(usage: dict) -> str:
    line = (f"{usage['total_tokens']} tokens ({usage['prompt_tokens']} prompt, "
            f"{usage['completion_tokens']} completion)")
    if "cost" in usage:
        line += f", ${usage['cost']:.6f}"
    return line
