"""Audio: PCM frames and files, voice activity endpointing, sound devices."""
