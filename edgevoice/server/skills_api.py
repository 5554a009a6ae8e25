"""What the skills hold, for the dashboard: the timers (in /api/status) and the shopping list (/api/list).

Read-only, and guarded like every /api route (edgevoice.server.access.pairing).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from edgevoice.server.state import SKILLS
from edgevoice.skills.box import BoxSkills
from edgevoice.skills.timers import TimerState


def timers_json(skills: BoxSkills | None) -> list[dict[str, Any]]:
    """Every timer, oldest first, with the time it has left now."""
    if skills is None:
        return []
    now = time.time()
    return [
        {
            "id": timer.id,
            "conversation": timer.conversation_id,
            "name": timer.name,
            "label": timer.label,
            "duration_s": timer.duration_s,
            "remaining_s": round(timer.remaining_s(now), 3),
            "state": timer.state.value,
            "ends_at": timer.ends_at if timer.state is TimerState.RUNNING else 0.0,
        }
        for timer in skills.skills.timers.book.timers
    ]


async def shopping_list(request: web.Request) -> web.Response:
    """GET /api/list: {"items": [...]}, in the order they were added."""
    skills = request.app.get(SKILLS)
    items = [] if skills is None else skills.skills.shopping.items.items
    return web.json_response({"items": items})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/list", shopping_list)
