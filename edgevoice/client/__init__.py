"""`edgevoice client`: talk to a box over its WebSocket from another machine."""
