"""Intents answered before the language model: the time and date, timers, "stop", the shopping list,
sums and units."""
