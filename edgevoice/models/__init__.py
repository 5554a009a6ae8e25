"""Where the models come from: the packaged defaults, user-configured files, and the Whisper converter."""
