"""Inference: load a model folder and predict (:mod:`.recognizer`), emotion over time (:mod:`.segments`), live streams (:mod:`.live`), the
results and their one serialiser (:mod:`.results`), engines (:mod:`.engine`), plots (:mod:`.plot`) and the ONNX
export of whole models (:mod:`.export`). Nothing here imports training code."""
from __future__ import annotations

from .live import EmotionStream, StreamEvent, pcm_samples
from .plot import LABEL_COLORS, label_color, plot_timeline, timeline_grid
from .recognizer import DEFAULT_MODEL, DEFAULT_MODEL_NOTICE, EmotionRecognizer, expand_inputs
from .results import UNCERTAIN_BELOW, Prediction, Segment, Timeline, flat, scored
from .segments import ADAPT_MIN_SEGMENTS, SegmentOptions, segment_file, segment_signal, windows

__all__ = ["ADAPT_MIN_SEGMENTS", "DEFAULT_MODEL", "DEFAULT_MODEL_NOTICE", "LABEL_COLORS", "UNCERTAIN_BELOW",
           "EmotionRecognizer", "EmotionStream", "Prediction", "Segment", "SegmentOptions", "StreamEvent", "Timeline", "expand_inputs", "flat",
           "label_color", "pcm_samples", "plot_timeline", "scored", "segment_file", "segment_signal", "timeline_grid", "windows"]
