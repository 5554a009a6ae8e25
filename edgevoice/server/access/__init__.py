"""Who gets in: the pairing token and cookie, wrong guesses and message rates, slow and hoarding HTTP clients."""
