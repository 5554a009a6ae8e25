"""The three native engines, each loaded once and run on a worker thread of its own."""
