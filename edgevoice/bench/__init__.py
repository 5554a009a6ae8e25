"""`edgevoice bench`: how fast the box answers and how well it hears, measured from outside."""
