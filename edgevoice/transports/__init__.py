"""Where a voice session's audio comes from and its events go: a WebSocket, the box's own audio, a file."""
