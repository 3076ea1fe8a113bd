"""Draw each shipped workflow's thumbnail (``example_workflows/<name>.jpg``) from its own graph: nodes and links.

    python tests/workflow_thumbnails.py            # rewrite every thumbnail
    python tests/workflow_thumbnails.py --check    # exit 1 if a thumbnail is missing

Node boxes are placed as in the workflow (scaled to fit), coloured by origin (Hallo nodes violet, core nodes
grey) and labelled with the node's title or type; links are drawn as curves in the colour of their data type.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WORKFLOWS = Path(__file__).resolve().parents[1] / "example_workflows"
SIZE = (640, 400)
MARGIN = 16
BACKGROUND = (32, 33, 38)
HALLO = ((88, 64, 140), (56, 44, 84))  # title bar, body
CORE = ((70, 74, 82), (48, 50, 56))
TEXT = (235, 235, 240)
LINK_COLOURS = {
    "IMAGE": (100, 181, 246), "MASK": (129, 199, 132), "AUDIO": (255, 167, 38), "FLOAT": (170, 238, 136),
    "INT": (170, 238, 136), "VIDEO": (244, 143, 177), "HALLO_MODEL": (206, 147, 216),
    "HALLO_AUDIO": (255, 204, 128), "HALLO_FACE": (128, 222, 234), "HALLO_REFERENCE": (179, 157, 219),
    "HALLO_MOTION": (239, 154, 154), "HALLO_CROP": (255, 241, 118),
}
DEFAULT_LINK = (180, 180, 180)
FONT_FILES = ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def font(size: int) -> ImageFont.ImageFont:
    for name in FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def label(node: dict) -> str:
    text = node.get("title") or node["type"]
    return text[len("Hallo"):] if text.startswith("Hallo") and len(text) > len("Hallo") else text


def layout(nodes: list[dict]) -> tuple[float, float, float]:
    """Scale and offset that fit every node box into the picture."""
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] - 30 for n in nodes)
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
    scale = min((SIZE[0] - 2 * MARGIN) / (x1 - x0), (SIZE[1] - 2 * MARGIN) / (y1 - y0))
    off_x = MARGIN - x0 * scale + (SIZE[0] - 2 * MARGIN - (x1 - x0) * scale) / 2
    off_y = MARGIN - y0 * scale + (SIZE[1] - 2 * MARGIN - (y1 - y0) * scale) / 2
    return scale, off_x, off_y


def boxes(nodes: list[dict], scale: float, off_x: float, off_y: float) -> dict[int, tuple[float, ...]]:
    """Node id -> (left, top, right, bottom) in pixels, the title bar included."""
    out = {}
    for n in nodes:
        x, y = n["pos"][0] * scale + off_x, (n["pos"][1] - 30) * scale + off_y
        out[n["id"]] = (x, y, x + n["size"][0] * scale, y + (n["size"][1] + 30) * scale)
    return out


def curve(a: tuple[float, float], b: tuple[float, float], steps: int = 24) -> list[tuple[float, float]]:
    """A horizontal-tangent cubic Bezier from a to b (LiteGraph's link shape)."""
    dx = max(30.0, abs(b[0] - a[0]) * 0.5)
    p = [a, (a[0] + dx, a[1]), (b[0] - dx, b[1]), b]
    pts = []
    for i in range(steps + 1):
        t = i / steps
        u = 1 - t
        pts.append((u**3 * p[0][0] + 3 * u * u * t * p[1][0] + 3 * u * t * t * p[2][0] + t**3 * p[3][0],
                    u**3 * p[0][1] + 3 * u * u * t * p[1][1] + 3 * u * t * t * p[2][1] + t**3 * p[3][1]))
    return pts


def draw_links(draw: ImageDraw.ImageDraw, workflow: dict, box: dict[int, tuple[float, ...]], scale: float) -> None:
    for _, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        if src not in box or dst not in box:
            continue
        s, d = box[src], box[dst]
        a = (s[2], s[1] + (30 + 20 * src_slot + 10) * scale)
        b = (d[0], d[1] + (30 + 20 * dst_slot + 10) * scale)
        draw.line(curve(a, b), fill=LINK_COLOURS.get(kind, DEFAULT_LINK), width=max(2, round(3 * scale * 2)))


def draw_nodes(draw: ImageDraw.ImageDraw, nodes: list[dict], box: dict[int, tuple[float, ...]], scale: float) -> None:
    size = max(9, min(18, round(24 * scale * 1.4)))
    text_font = font(size)
    bar = max(size + 6, 30 * scale)
    for n in nodes:
        left, top, right, bottom = box[n["id"]]
        title, body = HALLO if n["type"].startswith("Hallo") else CORE
        radius = max(3, round(8 * scale))
        draw.rounded_rectangle((left, top, right, bottom), radius=radius, fill=body, outline=(20, 20, 24))
        draw.rounded_rectangle((left, top, right, top + bar), radius=radius, fill=title)
        text = label(n)
        while text and draw.textlength(text, font=text_font) > right - left - 8:
            text = text[:-1]
        draw.text((left + 4, top + (bar - size) / 2 - 1), text, font=text_font, fill=TEXT)


def thumbnail(workflow: dict) -> Image.Image:
    """The workflow's graph as a picture."""
    nodes = [n for n in workflow["nodes"] if "pos" in n and "size" in n]
    scale, off_x, off_y = layout(nodes)
    box = boxes(nodes, scale, off_x, off_y)
    image = Image.new("RGB", SIZE, BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw_links(draw, workflow, box, scale)
    draw_nodes(draw, nodes, box, scale)
    return image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only check that every workflow has a thumbnail")
    args = ap.parse_args(argv)
    missing = []
    for path in sorted(WORKFLOWS.glob("*.json")):
        target = path.with_suffix(".jpg")
        if args.check:
            if not target.is_file():
                missing.append(target.name)
            continue
        thumbnail(json.loads(path.read_text())).save(target, quality=90)
    if missing:
        logging.getLogger(__name__).error("missing thumbnails: %s", ", ".join(missing))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
