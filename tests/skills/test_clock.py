"""The time and date, here and in places named the way people name them."""

from __future__ import annotations

import zoneinfo

import pytest

from edgevoice.skills.clock import Place, Places, date_reply, local_zone, spoken_key, time_reply
from tests.skills.conftest import NOON_UTC

LONDON = zoneinfo.ZoneInfo("Europe/London")
UTC = zoneinfo.ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("said", "zone", "name"),
    [
        ("tokyo", "Asia/Tokyo", "Tokyo"),  # a zone's own city
        ("Buenos Aires", "America/Argentina/Buenos_Aires", "Buenos Aires"),  # three levels deep
        ("japan", "Asia/Tokyo", "Japan"),  # a country with one zone
        ("France", "Europe/Paris", "France"),
        ("new york city", "America/New_York", "New York"),  # what people say that the database does not name
        ("LA", "America/Los_Angeles", "Los Angeles"),
        ("munich", "Europe/Berlin", "Munich"),
        ("the UK", "Europe/London", "the UK"),
        ("Port-au-Prince", "America/Port-au-Prince", "Port-au-Prince"),
    ],
)
def test_places_by_name(places: Places, said: str, zone: str, name: str) -> None:
    assert places.get(said) == Place(name, zone)


def test_unknown_places_and_countries_with_several_zones_are_not_guessed(places: Places) -> None:
    for said in ("narnia", "the kitchen", "united states", "australia", "russia"):
        assert places.get(said) is None, said


def test_every_place_has_a_zone_the_database_knows(places: Places) -> None:
    assert len(places) > 400
    for said in places.names():
        place = places.get(said)
        assert place is not None
        zoneinfo.ZoneInfo(place.zone)
        assert said == spoken_key(said)


def test_time_here(places: Places) -> None:
    assert time_reply(NOON_UTC, LONDON) == "It's one o'clock in the afternoon."  # British Summer Time
    assert time_reply(NOON_UTC + 5 * 60, UTC) == "It's twelve oh five in the afternoon."


def test_time_elsewhere_names_the_day_when_it_is_another_day_there(places: Places) -> None:
    tokyo, honolulu = places.get("tokyo"), places.get("honolulu")
    assert time_reply(NOON_UTC, LONDON, tokyo) == "In Tokyo it's nine o'clock at night."
    late = NOON_UTC + 11 * 3600 + 20 * 60  # 23:20 UTC Monday: 08:20 Tuesday in Tokyo
    assert time_reply(late, UTC, tokyo) == "In Tokyo it's Tuesday, eight twenty in the morning."
    assert time_reply(late, LONDON, tokyo) == "In Tokyo it's eight twenty in the morning."  # Tuesday in London too
    early = NOON_UTC - 11 * 3600  # 01:00 UTC Monday: 15:00 Sunday in Honolulu
    assert time_reply(early, UTC, honolulu) == "In Honolulu it's Sunday, three o'clock in the afternoon."


def test_date_here_and_elsewhere(places: Places) -> None:
    assert date_reply(NOON_UTC, LONDON) == "Today is Monday, June sixteenth, twenty twenty-five."
    late = NOON_UTC + 11 * 3600 + 20 * 60
    assert date_reply(late, LONDON, places.get("tokyo")) == "In Tokyo it's Tuesday, June seventeenth."


def test_the_system_zone_when_none_is_configured() -> None:
    assert local_zone("") is None
    assert time_reply(NOON_UTC, None).startswith("It's ")
    assert local_zone("Asia/Tokyo") == zoneinfo.ZoneInfo("Asia/Tokyo")
