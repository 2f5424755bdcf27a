"""The settings every face shares, each written once: the command line, the Python API, the web service and batch
jobs read them from here (a light module: ``emovox --help`` reads it without importing PyTorch)."""
from __future__ import annotations

#: below this top probability a prediction is reported as uncertain
UNCERTAIN_BELOW = 0.4

#: voice-activity detectors for timelines and streams: ``auto`` (silero when installed, else energy)
VAD_METHODS = ("auto", "silero", "energy")
#: the check before a whole file is given an emotion
SPEECH_GATES = ("energy", "silero", "off")
#: seconds of voice activity the speech gate needs before a file gets an emotion
MIN_SPEECH_S = 0.25

#: speech regions of a timeline: shortest kept, shortest pause that splits two, padding around each (seconds)
REGION_MIN_S = 0.3
REGION_MIN_SILENCE_S = 0.3
REGION_PAD_S = 0.1

#: windows of a timeline: at most this long, at most this far apart (seconds)
WINDOW_S = 4.0
HOP_S = 2.0
