"""Every limit dagnats enforces, in one place (pure: constants only).

Each is documented for users in docs/step-types.md and docs/handlers.md.
"""

from __future__ import annotations

#: The furthest ahead a durable timer may be set: a sleep, a wait's or an approval's timeout.
TIMER_HORIZON_S = 365 * 24 * 3600.0
#: An event published up to this long before a wait_for_event step starts still matches it.
EVENT_MATCH_WINDOW_S = 10 * 60.0
#: How long published events are kept in the EVENTS stream (for matching and inspection).
EVENT_MAX_AGE_S = 24 * 3600.0
#: The largest event body (JSON) accepted by `dagnats event publish` and the client.
EVENT_MAX_BYTES = 256 * 1024
