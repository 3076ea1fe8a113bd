"""A picture of evaluation reports over time, drawn with PIL (no plotting library needed).

Panels, top to bottom: identity similarity; mouth opening against speech activity; frame-to-frame change;
background colour distance (each only when a report has that curve). Clip boundaries are dashed vertical
lines in every panel; several reports are overlaid in different colours, named in the legend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .report import EvalReport

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]
SPEECH_FILL = (225, 225, 225)
BOUNDARY = (170, 170, 170)
AXIS = (60, 60, 60)
LEFT, RIGHT, TOP, PANEL_H, GAP, BOTTOM = 70, 20, 40, 150, 38, 44


@dataclass
class Panel:
    title: str
    ylabel: str
    keys: tuple[str, ...]
    anchor: float = 0.0  # a value the y axis always shows
    span: float = 1.0  # the y axis is at least this tall (noise in a flat curve is not blown up)


PANELS = (
    Panel("identity: ArcFace cosine to the reference", "similarity", ("identity",), 1.0, 0.2),
    Panel("mouth opening (line, scaled to its max) against speech activity (grey)", "opening / speech",
          ("mouth_opening", "speech_activity")),
    Panel("frame-to-frame change (grey levels); clip boundaries dashed", "change", ("frame_change",)),
    Panel("background colour distance to the reference (2.3 = just noticeable)", "dE76", ("colour_distance",),
          0.0, 3.0),
)


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _range(curves: list[np.ndarray], anchor: float = 0.0, span: float = 1.0) -> tuple[float, float]:
    vals = np.concatenate([c[np.isfinite(c)] for c in curves] + [np.array([anchor])])
    lo, hi = float(vals.min()), float(vals.max())
    if hi - lo < span:
        lo, hi = (hi - span, hi) if anchor >= hi else (lo, lo + span)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.05)
    return lo - pad, hi + pad


def _polyline(draw: ImageDraw.ImageDraw, xs: np.ndarray, ys: np.ndarray, colour: tuple, width: int = 2) -> None:
    """Connected segments; NaN breaks the line."""
    run: list[tuple[float, float]] = []
    for x, y in zip(xs, ys, strict=True):
        if math.isfinite(y):
            run.append((float(x), float(y)))
            continue
        if len(run) > 1:
            draw.line(run, fill=colour, width=width)
        run = []
    if len(run) > 1:
        draw.line(run, fill=colour, width=width)
    elif len(run) == 1:
        draw.point(run, fill=colour)


def _dashed_vline(draw: ImageDraw.ImageDraw, x: float, top: int, bottom: int) -> None:
    for y in range(top, bottom, 8):
        draw.line([(x, y), (x, min(y + 4, bottom))], fill=BOUNDARY, width=1)


def _ylabel(img: Image.Image, text: str, x: int, y_mid: int) -> None:
    font = _font()
    w = int(ImageDraw.Draw(img).textlength(text, font=font)) + 4
    label = Image.new("RGB", (w, 14), "white")
    ImageDraw.Draw(label).text((2, 1), text, fill=AXIS, font=font)
    rotated = label.rotate(90, expand=True)
    img.paste(rotated, (x, y_mid - rotated.height // 2))


@dataclass
class _Axes:
    left: int
    top: int
    width: int
    height: int
    t_max: float
    lo: float
    hi: float

    def x(self, t: np.ndarray | float) -> np.ndarray:
        return self.left + np.asarray(t, np.float64) / self.t_max * self.width

    def y(self, v: np.ndarray | float) -> np.ndarray:
        return self.top + (self.hi - np.asarray(v, np.float64)) / (self.hi - self.lo) * self.height


def _time_step(t_max: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300):
        if t_max / step <= 12:
            return float(step)
    return 600.0


def _frame(draw: ImageDraw.ImageDraw, ax: _Axes, title: str, boundaries: list[float]) -> None:
    font = _font()
    draw.text((ax.left, ax.top - 16), title, fill=AXIS, font=font)
    for t in boundaries:
        _dashed_vline(draw, float(ax.x(t)), ax.top, ax.top + ax.height)
    draw.rectangle([ax.left, ax.top, ax.left + ax.width, ax.top + ax.height], outline=AXIS)
    for v in (ax.lo, (ax.lo + ax.hi) / 2, ax.hi):
        y = float(ax.y(v))
        draw.line([(ax.left - 4, y), (ax.left, y)], fill=AXIS)
        text = f"{v:.3g}"
        draw.text((ax.left - 6 - draw.textlength(text, font=font), y - 6), text, fill=AXIS, font=font)
    step = _time_step(ax.t_max)
    for k in range(int(ax.t_max / step) + 1):
        x = float(ax.x(k * step))
        draw.line([(x, ax.top + ax.height), (x, ax.top + ax.height + 4)], fill=AXIS)
        draw.text((x - 6, ax.top + ax.height + 6), f"{k * step:g}", fill=AXIS, font=font)


def _times(report: EvalReport, n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / report.fps


def _draw_panel(img: Image.Image, panel: Panel, reports: list[EvalReport], ax: _Axes) -> None:
    draw = ImageDraw.Draw(img)
    speech = next((r for r in reports if "speech_activity" in r.curves), None)
    if "speech_activity" in panel.keys and speech is not None:
        act = np.nan_to_num(speech.curves["speech_activity"])
        xs = ax.x(_times(speech, len(act)))
        poly = [(float(xs[0]), float(ax.y(0)))] + [(float(x), float(ax.y(a))) for x, a in zip(xs, act, strict=True)]
        draw.polygon(poly + [(float(xs[-1]), float(ax.y(0)))], fill=SPEECH_FILL)
    bounds = sorted({b / r.fps for r in reports for b in r.boundaries})
    _frame(draw, ax, panel.title, bounds)
    for i, report in enumerate(reports):
        curve = report.curves.get(panel.keys[0])
        if curve is None:
            continue
        curve = np.asarray(curve, np.float64)
        if panel.keys[0] == "mouth_opening":
            peak = np.nanmax(curve) if np.isfinite(curve).any() else 1.0
            curve = curve / (peak if peak > 0 else 1.0)
        _polyline(draw, ax.x(_times(report, len(curve))), ax.y(curve), COLOURS[i % len(COLOURS)])
    _ylabel(img, panel.ylabel, 8, ax.top + ax.height // 2)


def _panel_range(panel: Panel, reports: list[EvalReport]) -> tuple[float, float]:
    if panel.keys[0] == "mouth_opening":
        return -0.05, 1.05
    curves = [np.asarray(r.curves[panel.keys[0]], np.float64) for r in reports if panel.keys[0] in r.curves]
    return _range(curves, panel.anchor, panel.span)


def _legend(draw: ImageDraw.ImageDraw, reports: list[EvalReport], width: int) -> None:
    font = _font()
    x = LEFT
    for i, report in enumerate(reports):
        draw.rectangle([x, 14, x + 16, 24], fill=COLOURS[i % len(COLOURS)])
        draw.text((x + 22, 12), report.name, fill=AXIS, font=font)
        x += 40 + int(draw.textlength(report.name, font=font))
        if x > width - 100:
            break


def plot_reports(reports: list[EvalReport], width: int = 960) -> np.ndarray:
    """An RGB uint8 ``(H, W, 3)`` picture of the reports' curves over time (see the module docstring)."""
    if not reports:
        raise ValueError("plot_reports needs at least one report")
    panels = [p for p in PANELS if any(p.keys[0] in r.curves for r in reports)]
    height = TOP + len(panels) * (PANEL_H + GAP) + BOTTOM - GAP
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    _legend(draw, reports, width)
    t_max = max(max(r.num_frames - 1, 1) / r.fps for r in reports)
    for k, panel in enumerate(panels):
        lo, hi = _panel_range(panel, reports)
        ax = _Axes(LEFT, TOP + 16 + k * (PANEL_H + GAP), width - LEFT - RIGHT, PANEL_H - 16, t_max, lo, hi)
        _draw_panel(img, panel, reports, ax)
    draw.text((LEFT + (width - LEFT - RIGHT) // 2 - 20, height - 18), "time (s)", fill=AXIS, font=_font())
    return np.asarray(img, np.uint8)
