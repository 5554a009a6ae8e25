"""The engines: speech to text, the language model and the voice, here or on the LAN's machines.

whisper.cpp and llama.cpp run their threads with OpenMP. Once a parallel step ends, OpenMP's
threads spin for a while before they sleep, so the next step starts at once; with the default
spin, two engines computing at once on two cores (four rooms talking together) spend the cores
spinning at each other's barriers: first audio p95 was 17 s with four clients. A short spin
(1,000 rounds, against libgomp's default of 300,000) keeps one speaker's latency (bench p50
753 ms against 730-744 ms) and gives four at once p50 1.3 s, p95 2.6 s (see the notes for the
commands). OpenMP reads this when the engines' libraries load, which happens below this
package; a value the user set is kept.
"""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "1000")
