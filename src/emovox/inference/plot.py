"""Pictures of a timeline: a band of the top emotion over a heatmap of every label's probability."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .results import UNCERTAIN_BELOW, Segment, Timeline

#: Colour of each canonical label in plots and on the web page (colour-blind-safe where possible).
LABEL_COLORS = {
    "angry": "#d62728", "calm": "#17becf", "disgust": "#8c564b", "fear": "#9467bd", "happy": "#ffbf00",
    "neutral": "#7f7f7f", "sad": "#1f77b4", "surprise": "#2ca02c",
}

def label_color(label: str, index: int = 0) -> str:
    """Plot colour of ``label`` (a fixed one for the canonical labels, a matplotlib cycle colour otherwise)."""
    return LABEL_COLORS.get(label, f"C{index % 10}")


def _ownership(timeline: Timeline) -> list[tuple[float, float, Segment]]:
    """Non-overlapping ``(start, end, segment)`` spans: each instant of speech belongs to the segment whose
    centre is nearest (overlapping windows split at the midpoint between their centres)."""
    out: list[tuple[float, float, Segment]] = []
    segs = sorted(timeline.segments, key=lambda g: (g.start, g.end))
    for i, seg in enumerate(segs):
        start, end = seg.start, seg.end
        centre = (seg.start + seg.end) / 2
        if i > 0 and segs[i - 1].end > seg.start:
            start = max(start, (centre + (segs[i - 1].start + segs[i - 1].end) / 2) / 2)
        if i + 1 < len(segs) and segs[i + 1].start < seg.end:
            end = min(end, (centre + (segs[i + 1].start + segs[i + 1].end) / 2) / 2)
        if end > start:
            out.append((start, end, seg))
    return out


def timeline_grid(timeline: Timeline, columns: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``(edges, probs)``: ``columns + 1`` time edges over the recording and a ``(labels, columns)`` matrix of each
    label's probability in every column (the owning segment's, see :func:`_ownership`), NaN outside speech."""
    edges = np.linspace(0.0, max(timeline.duration, 1e-3), columns + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    grid = np.full((len(timeline.labels), columns), np.nan)
    for start, end, seg in _ownership(timeline):
        cols = (centres >= start) & (centres < end)
        grid[:, cols] = np.array([seg.probabilities[lab] for lab in timeline.labels])[:, None]
    return edges, grid


def plot_timeline(timeline: Timeline, path: str | Path, *, title: str | None = None,
                  uncertain_below: float | None = None) -> Path:
    """Save a PNG of the timeline, readable at a glance on long recordings.

    Top: a band coloured by the most probable emotion of each segment
    (hatched where its probability is below ``uncertain_below``, default
    :data:`emovox.inference.results.UNCERTAIN_BELOW` as in ``emovox predict``; white
    where there is no speech). Below: a heatmap of every label's probability over
    time.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch


    uncertain_below = UNCERTAIN_BELOW if uncertain_below is None else uncertain_below
    path = Path(path)
    labels = timeline.labels
    duration = max(timeline.duration, 1e-3)
    band_height = 1.0 + 0.35 * max(0, len(timeline.speakers) - 1)
    fig, (band, heat) = plt.subplots(2, 1, figsize=(11, 0.6 + band_height + 0.32 * len(labels) + 0.9), dpi=120, sharex=True,
                                     gridspec_kw={"height_ratios": [band_height, 0.32 * len(labels)], "hspace": 0.08})
    for s, e in timeline.speech:
        band.axvspan(s, e, ymin=0.0, ymax=0.12, color="0.85", lw=0)
    handles, seen = [], set()
    voices = timeline.speakers  # a conversation: one lane per speaker, the first on top
    lanes = [(who, replace(timeline, segments=[s for s in timeline.segments if s.speaker == who])) for who in voices] or [(None, timeline)]
    height = 0.85 / len(lanes)
    for k, (who, part) in enumerate(lanes):
        top = 1.0 - k * height
        for start, end, seg in _ownership(part):
            i = labels.index(seg.label)
            unsure = seg.confidence < uncertain_below
            band.axvspan(start, end, ymin=top - height + 0.02, ymax=top, facecolor=label_color(seg.label, i),
                         alpha=0.45 if unsure else 0.95, hatch="///" if unsure else None, edgecolor="white", lw=0.3)
            seen.add(seg.label)
    if voices:
        band.set_yticks([1.0 - (k + 0.5) * height for k in range(len(lanes))], voices, fontsize=8)
    for i, lab in enumerate(labels):
        if lab in seen:
            handles.append(Patch(facecolor=label_color(lab, i), label=lab))
    if any(seg.confidence < uncertain_below for seg in timeline.segments):
        handles.append(Patch(facecolor="0.7", hatch="///", edgecolor="white", label=f"uncertain (< {uncertain_below:g})"))
    if not voices:
        band.set_yticks([])
    band.set_ylim(0, 1)
    band.set_title(title or Path(timeline.source).name, loc="left", fontsize=10)
    note = "speaker-adapted" if timeline.adaptation == "speaker" else "per segment"
    note += f", {len(voices)} speakers" if voices else ""
    band.set_title(f"{len(timeline.segments)} segments, {note}", loc="right", fontsize=8, color="0.35")
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 9), fontsize=8, frameon=False)
    if timeline.segments:
        edges, grid = timeline_grid(timeline, columns=int(min(4000, max(200, duration * 10))))
        cmap = matplotlib.colormaps["magma_r"].with_extremes(bad="white")
        mesh = heat.pcolormesh(edges, np.arange(len(labels) + 1), np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1,
                               shading="flat")
        cbar = fig.colorbar(mesh, cax=heat.inset_axes([1.01, 0.0, 0.012, 1.0]))
        cbar.set_label("probability", fontsize=8)
    else:
        band.text(0.5, 0.55, timeline.message or "no speech found", ha="center", va="center", transform=band.transAxes, wrap=True)
    heat.set_yticks(np.arange(len(labels)) + 0.5, labels, fontsize=8)
    heat.set_ylim(len(labels), 0)
    heat.set_xlim(0, duration)
    heat.set_xlabel("time (s)")
    fig.subplots_adjust(left=0.08, right=0.92, top=0.9, bottom=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
