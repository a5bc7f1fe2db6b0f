"""Trattoria Aurora's booking system: a small real HTTP service the example agent's webhooks
call (`check_availability`, `book_table`). `voxbus run` starts it as the agent's sidecar.

It keeps bookings in SQLite, knows the opening hours and a seat capacity per sitting, and
reads dates and times the way a caller (or a small model) says them: "2026-12-06",
"tomorrow", "friday"; "19:00", "7pm", "7:30 pm". Answers are one short sentence the agent
can read out, plus the normalised fields. A booking must follow a "yes" from the availability
check for the same party, date and time (as a real system holds a table): a model that books
at once is told to check first. Stdlib + aiohttp only.

    python booking_service.py --port 8790 --db bookings.sqlite
"""

from __future__ import annotations

import argparse
import datetime as dt
import hmac
import json
import os
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

SEATS_PER_SITTING = 40  # the dining room; a sitting is lunch or dinner on one day
MAX_PARTY = 10  # larger groups: the Aurora room, arranged by phone (knowledge/bookings.md)
BOOK_AHEAD_DAYS = 60
CHECK_VALID_S = 900.0  # a booking must follow an availability check this recent
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# weekday (0 = Monday) -> [(sitting, first, last seating)]; last seating 1 h before closing
SITTINGS: dict[int, list[tuple[str, str, str]]] = {
    **{d: [("lunch", "12:00", "13:30"), ("dinner", "18:00", "21:30")] for d in (1, 2, 3, 4, 5)},
    6: [("lunch", "12:00", "14:00")],
}
CLOSED_DAYS = {(12, 25), (12, 26), (1, 1)} | {(8, d) for d in range(1, 15)}


class BadRequest(ValueError):
    """The request cannot be read; the message says what to send instead."""


def parse_date(text: str, today: dt.date) -> dt.date:
    s = text.strip().lower()
    if s in ("today", "tonight", "this evening"):
        return today
    if s == "tomorrow":
        return today + dt.timedelta(days=1)
    s = re.sub(r"^(this|next|on)\s+", "", s)
    if s in WEEKDAYS:
        ahead = (WEEKDAYS.index(s) - today.weekday()) % 7 or 7
        return today + dt.timedelta(days=ahead)
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise BadRequest(f"date {text!r}: use YYYY-MM-DD, 'today', 'tomorrow' or a weekday"
                         ) from None


_TIME = re.compile(r"^(\d{1,2})(?:[:.h](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?$")


def parse_time(text: str) -> dt.time:
    s = text.strip().lower().replace("o'clock", "").strip()
    if s in ("noon", "midday"):
        return dt.time(12, 0)
    match = _TIME.match(s)
    if not match:
        raise BadRequest(f"time {text!r}: use HH:MM on the 24-hour clock, like 19:30")
    hour, minute, half = int(match[1]), int(match[2] or 0), (match[3] or "")[:1]
    if half == "p" and hour < 12:
        hour += 12
    elif half == "a" and hour == 12:
        hour = 0
    elif not half and 1 <= hour <= 10:
        hour += 12  # "at 7" on a restaurant line is the evening
    if hour > 23 or minute > 59:
        raise BadRequest(f"time {text!r} is not a time of day")
    return dt.time(hour, minute)


def spoken(day: dt.date, at: dt.time) -> str:
    clock = at.strftime("%I:%M %p").lstrip("0").replace(":00", "")
    return f"{day.strftime('%A')} {day.day} {day.strftime('%B')} at {clock}"


@dataclass(frozen=True)
class Request:
    party_size: int
    day: dt.date
    at: dt.time

    @classmethod
    def read(cls, body: dict[str, Any], today: dt.date) -> Request:
        try:
            size = int(body["party_size"])
            day, at = parse_date(str(body["date"]), today), parse_time(str(body["time"]))
        except KeyError as exc:
            raise BadRequest(f"missing field {exc.args[0]}") from None
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc) if isinstance(exc, BadRequest)
                             else "party_size must be a number") from None
        if size < 1:
            raise BadRequest("party_size must be at least 1")
        return cls(size, day, at)


class Bookings:
    """The restaurant's book: opening rules and a seat count per sitting, in SQLite."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS bookings (id INTEGER PRIMARY KEY, "
                        "day TEXT, sitting TEXT, time TEXT, party INTEGER, name TEXT, "
                        "created TEXT)")
        self.db.commit()
        self.checked: dict[Request, float] = {}  # availability answered "yes": monotonic time

    def sitting(self, day: dt.date, at: dt.time) -> str | None:
        hhmm = at.strftime("%H:%M")
        for name, first, last in SITTINGS.get(day.weekday(), []):
            if first <= hhmm <= last:
                return name
        return None

    def seats_left(self, day: dt.date, sitting: str) -> int:
        row = self.db.execute("SELECT COALESCE(SUM(party), 0) FROM bookings WHERE day = ? "
                              "AND sitting = ?", (day.isoformat(), sitting)).fetchone()
        return SEATS_PER_SITTING - int(row[0])

    def check(self, req: Request, today: dt.date) -> dict[str, Any]:
        """{"available": bool, "message": ...}: the reason when not, with a nearby option."""
        when = spoken(req.day, req.at)
        fields = {"party_size": req.party_size, "date": req.day.isoformat(),
                  "time": req.at.strftime("%H:%M")}
        if req.day < today or (req.day - today).days > BOOK_AHEAD_DAYS:
            why = ("that date has passed" if req.day < today
                   else f"we take bookings up to {BOOK_AHEAD_DAYS} days ahead")
            return {"available": False, **fields, "message": f"No: {why}."}
        if req.party_size > MAX_PARTY:
            return {"available": False, **fields, "message": (
                f"Groups over {MAX_PARTY} dine in the Aurora room, booked with the manager.")}
        if (req.day.month, req.day.day) in CLOSED_DAYS or req.day.weekday() not in SITTINGS:
            return {"available": False, **fields,
                    "message": f"We are closed on {req.day.strftime('%A %d %B')}."}
        sitting = self.sitting(req.day, req.at)
        if sitting is None:
            hours = ", ".join(f"{n} seatings {a} to {b}" for n, a, b in SITTINGS[req.day.weekday()])
            return {"available": False, **fields,
                    "message": f"We do not seat at that time on {req.day:%A}: {hours}."}
        if self.seats_left(req.day, sitting) < req.party_size:
            return {"available": False, **fields, "message": f"We are full on {when}."}
        self.checked[req] = time.monotonic()
        return {"available": True, **fields,
                "message": f"Yes, a table for {req.party_size} is free on {when}."}

    def book(self, req: Request, name: str, today: dt.date) -> dict[str, Any]:
        """Only what was checked in the last CHECK_VALID_S: the caller heard it was free."""
        checked = self.checked.get(req)
        if checked is None or time.monotonic() - checked > CHECK_VALID_S:
            return {"booked": False, "party_size": req.party_size, "date": req.day.isoformat(),
                    "time": req.at.strftime("%H:%M"), "message": (
                        "Not booked: check availability for this party size, date and time "
                        "first, and tell the caller.")}
        answer = self.check(req, today)
        if not answer["available"]:
            return {"booked": False, **answer}
        cur = self.db.execute(
            "INSERT INTO bookings (day, sitting, time, party, name, created) VALUES "
            "(?, ?, ?, ?, ?, ?)", (req.day.isoformat(), self.sitting(req.day, req.at),
                                   req.at.strftime("%H:%M"), req.party_size, name,
                                   dt.datetime.now(dt.UTC).isoformat()))
        self.db.commit()
        ref = f"A{cur.lastrowid:04d}"
        return {"booked": True, "reference": ref, **{k: answer[k] for k in (
            "party_size", "date", "time")}, "name": name, "message": (
            f"Booked: a table for {req.party_size} under {name} on "
            f"{spoken(req.day, req.at)}, reference {ref}.")}

    def all(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, day, time, party, name FROM bookings ORDER BY id")
        return [{"reference": f"A{r[0]:04d}", "date": r[1], "time": r[2], "party_size": r[3],
                 "name": r[4]} for r in rows]


def make_app(book: Bookings, token: str = "",
             today: Any = dt.date.today) -> web.Application:
    """`today` is a function (a test pins the date)."""

    @web.middleware
    async def guard(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if request.path == "/health":
            return await handler(request)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token and not hmac.compare_digest(given, token):
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            return await handler(request)
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def body(request: web.Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.read() or b"{}")
        except ValueError:
            raise BadRequest("the body must be JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        return data

    async def availability(request: web.Request) -> web.Response:
        return web.json_response(book.check(Request.read(await body(request), today()), today()))

    async def bookings(request: web.Request) -> web.Response:
        data = await body(request)
        name = str(data.get("name", "")).strip()[:80]
        if not name:
            raise BadRequest("missing field name: the name for the booking")
        return web.json_response(book.book(Request.read(data, today()), name, today()))

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(book.all())

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app.add_routes([web.post("/availability", availability), web.post("/bookings", bookings),
                    web.get("/bookings", listing), web.get("/health", health)])
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8790)
    ap.add_argument("--db", default="bookings.sqlite")
    args = ap.parse_args()
    app = make_app(Bookings(args.db), os.environ.get("BOOKING_API_TOKEN", ""))
    # a short grace on SIGINT/SIGTERM: a client's idle keep-alive must not hold a stop for 60 s
    web.run_app(app, host=args.host, port=args.port, print=None, shutdown_timeout=1.0)


if __name__ == "__main__":
    main()
