"""edgevoice: a private, always-on voice assistant for a small box on the home LAN."""

__version__ = "0.1.0"
