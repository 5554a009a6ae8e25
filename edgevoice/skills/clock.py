"""The time and the date, here or in a city or country said by name.

Places come from the time zone database itself: every zone's city ("Asia/Tokyo" -> "tokyo"), every
country with one zone ("Japan"), and a short table of what people say that the database does not
name (New York City, LA, Munich, England). The tzdata package ships the database and its tables
for systems that have none.
"""

from __future__ import annotations

import datetime
import importlib.resources
import logging
import re
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgevoice.skills.speech import clock_words, date_words, weekday_name

_log = logging.getLogger(__name__)

ALIASES: dict[str, tuple[str, str]] = {
    # said: (zone, name in the reply)
    "new york city": ("America/New_York", "New York"),
    "nyc": ("America/New_York", "New York"),
    "washington": ("America/New_York", "Washington"),
    "washington dc": ("America/New_York", "Washington"),
    "boston": ("America/New_York", "Boston"),
    "miami": ("America/New_York", "Miami"),
    "atlanta": ("America/New_York", "Atlanta"),
    "philadelphia": ("America/New_York", "Philadelphia"),
    "chicago": ("America/Chicago", "Chicago"),
    "dallas": ("America/Chicago", "Dallas"),
    "houston": ("America/Chicago", "Houston"),
    "austin": ("America/Chicago", "Austin"),
    "new orleans": ("America/Chicago", "New Orleans"),
    "salt lake city": ("America/Denver", "Salt Lake City"),
    "la": ("America/Los_Angeles", "Los Angeles"),
    "l a": ("America/Los_Angeles", "Los Angeles"),
    "san francisco": ("America/Los_Angeles", "San Francisco"),
    "seattle": ("America/Los_Angeles", "Seattle"),
    "las vegas": ("America/Los_Angeles", "Las Vegas"),
    "san diego": ("America/Los_Angeles", "San Diego"),
    "silicon valley": ("America/Los_Angeles", "Silicon Valley"),
    "hawaii": ("Pacific/Honolulu", "Hawaii"),
    "alaska": ("America/Anchorage", "Alaska"),
    "montreal": ("America/Toronto", "Montreal"),
    "ottawa": ("America/Toronto", "Ottawa"),
    "calgary": ("America/Edmonton", "Calgary"),
    "rio": ("America/Sao_Paulo", "Rio"),
    "rio de janeiro": ("America/Sao_Paulo", "Rio de Janeiro"),
    "england": ("Europe/London", "England"),
    "scotland": ("Europe/London", "Scotland"),
    "wales": ("Europe/London", "Wales"),
    "uk": ("Europe/London", "the UK"),
    "the uk": ("Europe/London", "the UK"),
    "great britain": ("Europe/London", "Britain"),
    "united kingdom": ("Europe/London", "the UK"),
    "the united kingdom": ("Europe/London", "the UK"),
    "manchester": ("Europe/London", "Manchester"),
    "edinburgh": ("Europe/London", "Edinburgh"),
    "glasgow": ("Europe/London", "Glasgow"),
    "germany": ("Europe/Berlin", "Germany"),
    "munich": ("Europe/Berlin", "Munich"),
    "frankfurt": ("Europe/Berlin", "Frankfurt"),
    "hamburg": ("Europe/Berlin", "Hamburg"),
    "spain": ("Europe/Madrid", "Spain"),
    "barcelona": ("Europe/Madrid", "Barcelona"),
    "portugal": ("Europe/Lisbon", "Portugal"),
    "milan": ("Europe/Rome", "Milan"),
    "venice": ("Europe/Rome", "Venice"),
    "florence": ("Europe/Rome", "Florence"),
    "naples": ("Europe/Rome", "Naples"),
    "geneva": ("Europe/Zurich", "Geneva"),
    "ukraine": ("Europe/Kyiv", "Ukraine"),
    "kiev": ("Europe/Kyiv", "Kyiv"),
    "saint petersburg": ("Europe/Moscow", "Saint Petersburg"),
    "st petersburg": ("Europe/Moscow", "Saint Petersburg"),
    "tel aviv": ("Asia/Jerusalem", "Tel Aviv"),
    "abu dhabi": ("Asia/Dubai", "Abu Dhabi"),
    "mumbai": ("Asia/Kolkata", "Mumbai"),
    "bombay": ("Asia/Kolkata", "Mumbai"),
    "delhi": ("Asia/Kolkata", "Delhi"),
    "new delhi": ("Asia/Kolkata", "New Delhi"),
    "bangalore": ("Asia/Kolkata", "Bangalore"),
    "china": ("Asia/Shanghai", "China"),
    "beijing": ("Asia/Shanghai", "Beijing"),
    "south korea": ("Asia/Seoul", "South Korea"),
    "korea": ("Asia/Seoul", "Korea"),
    "north korea": ("Asia/Pyongyang", "North Korea"),
    "osaka": ("Asia/Tokyo", "Osaka"),
    "kyoto": ("Asia/Tokyo", "Kyoto"),
    "saigon": ("Asia/Ho_Chi_Minh", "Saigon"),
    "canberra": ("Australia/Sydney", "Canberra"),
    "wellington": ("Pacific/Auckland", "Wellington"),
    "new zealand": ("Pacific/Auckland", "New Zealand"),
    "cape town": ("Africa/Johannesburg", "Cape Town"),
    "utc": ("UTC", "UTC"),
    "gmt": ("UTC", "GMT"),
}
_WORD = re.compile(r"\W+")


@dataclass(frozen=True)
class Place:
    name: str
    """As said in a reply: "Tokyo", "New York", "the UK"."""
    zone: str
    """IANA time zone: "Asia/Tokyo"."""


def spoken_key(text: str) -> str:
    """How a place name is matched: "St. John's" -> "st johns", "Port-au-Prince" -> "port au prince"."""
    return " ".join(_WORD.sub(" ", text.casefold().replace("'", "").replace("’", "").replace("_", " ")).split())


class Places:
    """Place names people say, each mapped to a time zone."""

    def __init__(self, places: dict[str, Place]) -> None:
        self._places = places

    @classmethod
    def load(cls) -> Places:
        places: dict[str, Place] = {}
        zones = _zone_table()
        for zone in sorted({zone for _, zone in zones}):
            city = zone.rsplit("/", 1)[-1].replace("_", " ")
            places.setdefault(spoken_key(city), Place(city, zone))
        per_country = Counter(code for code, _ in zones)
        countries = _country_names()
        for code, zone in zones:
            name = countries.get(code)
            if name and per_country[code] == 1:
                places.setdefault(spoken_key(name), Place(name, zone))
        for said, (zone, name) in ALIASES.items():
            places[spoken_key(said)] = Place(name, zone)
        usable = {}
        for key, place in places.items():
            try:
                zoneinfo.ZoneInfo(place.zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue  # an older zone database lacks it
            usable[key] = place
        return cls(usable)

    def get(self, said: str) -> Place | None:
        return self._places.get(spoken_key(said))

    def __getitem__(self, said: str) -> Place:
        return self._places[spoken_key(said)]

    def names(self) -> list[str]:
        """Every name a place can be called by, as matched (lower case, no punctuation)."""
        return sorted(self._places)

    def __len__(self) -> int:
        return len(self._places)


def _tzdata_table(name: str) -> str | None:
    """A table of the time zone database (zone.tab, iso3166.tab): the tzdata package's, else the system's."""
    try:
        return (importlib.resources.files("tzdata") / "zoneinfo" / name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError):
        pass
    for directory in zoneinfo.TZPATH:
        try:
            return (Path(directory) / name).read_text(encoding="utf-8")
        except OSError:
            continue
    return None


def _table_rows(name: str) -> list[list[str]]:
    text = _tzdata_table(name)
    if text is None:
        _log.warning("no %s in the time zone database: cities are named from the zone list only", name)
        return []
    return [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]


def _zone_table() -> list[tuple[str, str]]:
    """(country code, zone) for every zone people live in; the zone list alone where the table is missing."""
    rows = [(row[0], row[2]) for row in _table_rows("zone.tab") if len(row) >= 3]
    if rows:
        return rows
    areas = ("Africa/", "America/", "Asia/", "Atlantic/", "Australia/", "Europe/", "Indian/", "Pacific/")
    return [("", zone) for zone in sorted(zoneinfo.available_timezones()) if zone.startswith(areas)]


def _country_names() -> dict[str, str]:
    """Country code -> name, without the table's notes in brackets: "Britain (UK)" -> "Britain"."""
    return {row[0]: row[1].split(" (")[0] for row in _table_rows("iso3166.tab") if len(row) >= 2}


def local_zone(name: str) -> datetime.tzinfo | None:
    """The box's own zone: the one configured, or None for the system's."""
    return zoneinfo.ZoneInfo(name) if name else None


def _at(now: float, zone: datetime.tzinfo | None) -> datetime.datetime:
    # With no zone, astimezone() asks the system each time, so a change of its zone or of DST is seen.
    return datetime.datetime.fromtimestamp(now, zone) if zone else datetime.datetime.fromtimestamp(now).astimezone()


def time_reply(now: float, local: datetime.tzinfo | None, place: Place | None = None) -> str:
    """ "It's three oh five in the afternoon."; for a place "In Tokyo it's four ten in the morning.",
    with the weekday before the time when it is another day there than here."""
    here = _at(now, local)
    if place is None:
        return f"It's {clock_words(here.hour, here.minute)}."
    there = _at(now, zoneinfo.ZoneInfo(place.zone))
    said = clock_words(there.hour, there.minute)
    if there.date() != here.date():
        said = f"{weekday_name(there.date())}, {said}"
    return f"In {place.name} it's {said}."


def date_reply(now: float, local: datetime.tzinfo | None, place: Place | None = None) -> str:
    here = _at(now, local)
    if place is None:
        return f"Today is {date_words(here.date())}."
    there = _at(now, zoneinfo.ZoneInfo(place.zone))
    return f"In {place.name} it's {date_words(there.date(), with_year=there.year != here.year)}."
