"""The example agent's booking sidecar: opening rules, seats per sitting, the way callers
and small models write dates and times, bad requests answered with a reason, a token."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 12, 5)  # a Saturday


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "booking_service", ROOT / "agents" / "restaurant" / "booking_service.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["booking_service"] = module
    spec.loader.exec_module(module)
    return module


bs = load()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    app = bs.make_app(bs.Bookings(str(tmp_path / "b.sqlite")), token="t0k",
                      today=lambda: TODAY)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t0k"}) as http:
        yield base, http
    await runner.cleanup()


async def post(api: tuple[str, aiohttp.ClientSession], path: str,
               body: Any) -> tuple[int, dict[str, Any]]:
    base, http = api
    async with http.post(base + path, json=body) as resp:
        return resp.status, await resp.json()


def test_dates_and_times_as_callers_say_them() -> None:
    assert bs.parse_date("tomorrow", TODAY) == dt.date(2026, 12, 6)
    assert bs.parse_date("Friday", TODAY) == dt.date(2026, 12, 11)
    assert bs.parse_date("next saturday", TODAY) == dt.date(2026, 12, 12)
    assert bs.parse_date("2026-12-24", TODAY) == dt.date(2026, 12, 24)
    assert bs.parse_time("7pm") == dt.time(19) == bs.parse_time("19:00") == bs.parse_time("7")
    assert bs.parse_time("7:30 p.m.") == dt.time(19, 30)
    assert bs.parse_time("noon") == dt.time(12)
    with pytest.raises(bs.BadRequest, match="use YYYY-MM-DD"):
        bs.parse_date("someday", TODAY)
    with pytest.raises(bs.BadRequest, match="24-hour clock"):
        bs.parse_time("late")


async def test_availability_follows_the_opening_rules(api: Any) -> None:
    ok = await post(api, "/availability", {"party_size": 2, "date": "2026-12-08",
                                           "time": "19:00"})
    assert ok == (200, {"available": True, "party_size": 2, "date": "2026-12-08",
                        "time": "19:00", "message":
                        "Yes, a table for 2 is free on Tuesday 8 December at 7 PM."})
    monday = (await post(api, "/availability", {"party_size": 2, "date": "2026-12-07",
                                                "time": "19:00"}))[1]
    assert not monday["available"] and "closed on Monday" in monday["message"]
    sunday_night = (await post(api, "/availability", {"party_size": 2, "date": "tomorrow",
                                                      "time": "7pm"}))[1]
    assert not sunday_night["available"] and "lunch seatings 12:00" in sunday_night["message"]
    big = (await post(api, "/availability", {"party_size": 14, "date": "2026-12-08",
                                             "time": "19:00"}))[1]
    assert not big["available"] and "Aurora room" in big["message"]


async def test_a_booking_needs_an_availability_check_first(api: Any) -> None:
    want = {"party_size": 2, "date": "2026-12-10", "time": "20:00", "name": "Anna"}
    status, body = await post(api, "/bookings", want)
    assert status == 200 and body["booked"] is False and "check availability" in body["message"]
    await post(api, "/availability", {**want, "time": "8pm"})  # the same slot, said another way
    assert (await post(api, "/bookings", want))[1]["booked"] is True


async def test_bookings_fill_a_sitting(api: Any) -> None:
    want = {"party_size": 10, "date": "2026-12-10", "time": "20:00", "name": "Anna"}
    refs = []
    for _ in range(4):
        await post(api, "/availability", want)
        status, body = await post(api, "/bookings", want)
        assert status == 200 and body["booked"], body
        refs.append(body["reference"])
    assert refs == ["A0001", "A0002", "A0003", "A0004"]
    assert "under Anna on Thursday 10 December at 8 PM" in body["message"]
    full = (await post(api, "/availability", {**want, "party_size": 1}))[1]
    assert full["available"] is False and "full" in full["message"]
    await post(api, "/availability", {**want, "time": "12:30"})
    lunch = (await post(api, "/bookings", {**want, "time": "12:30"}))[1]
    assert lunch["booked"] is True  # another sitting
    base, http = api
    async with http.get(base + "/bookings") as resp:
        assert len(await resp.json()) == 5


async def test_bad_requests_get_a_reason(api: Any) -> None:
    assert await post(api, "/availability", {"party_size": "two", "date": "tomorrow",
                                             "time": "19:00"}) == (
        400, {"error": "party_size must be a number"})
    status, body = await post(api, "/availability", {"party_size": 2, "time": "19:00"})
    assert (status, body) == (400, {"error": "missing field date"})
    status, body = await post(api, "/bookings", {"party_size": 2, "date": "2026-12-08",
                                                 "time": "19:00"})
    assert status == 400 and "name" in body["error"]
    assert (await post(api, "/availability", [1, 2]))[0] == 400
    base, _ = api
    async with aiohttp.ClientSession() as anonymous, anonymous.post(
            base + "/availability", json={}) as resp:
        assert resp.status == 401
