"""The web console at ``/console``: HTML shells and their scripts, no data of its own.

Every page is a public shell. The browser asks for the API key once (login page), keeps it in
``sessionStorage`` and sends it as ``X-API-Key`` on each ``fetch`` to the JSON API, the session's
event stream included (read with ``fetch`` and a stream reader, since ``EventSource`` cannot send
headers; so no key ever travels in a URL). Pages render data with ``textContent`` only, and a
Content-Security-Policy forbids inline scripts, so text from users or models never runs.
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static/console", static_url_path="/static")

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


@bp.after_request
def _lock_down(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@bp.get("")
@bp.get("/")
def index():
    """Open the session list."""
    return redirect(url_for("console.sessions"))


@bp.get("/login")
def login():
    """Show the page that asks for the API key."""
    return _page("login", "Sign in")


@bp.get("/sessions")
def sessions():
    """Show the session list with its filters."""
    return _page("sessions", "Sessions")


@bp.get("/sessions/<session_id>")
def session(session_id: str):
    """Show one session, following its progress live."""
    return _page("session", "Session", session_id=session_id)


@bp.get("/new")
def submit():
    """Show the form that asks the council a question."""
    return _page("submit", "Ask the council")


@bp.get("/fleet")
def fleet():
    """Show workers, queues, tasks, breakers and recent failures (admin key)."""
    return _page("fleet", "Fleet")


def _page(name: str, title: str, **context: str):
    return render_template(f"console/{name}.html", page=name, title=title, **context)
