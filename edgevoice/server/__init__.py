"""The daemon on the LAN: the app, its routes and state, who gets in, and how it starts and stops."""
