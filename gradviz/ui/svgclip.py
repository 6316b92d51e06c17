"""Data paths of an SVG figure cut to their plot's rectangle.

pyqtgraph's SVG exporter clips each plot's curves with a ``clip-path``, but many viewers
and converters (Qt's own SVG renderer among them, as SVG Tiny has no clipping) ignore it,
and a curve that leaves the plot's range runs over the axes, the ticks and the title. Here
the coordinates themselves are cut: a line keeps its pieces inside the rectangle, a filled
shape (a band) becomes its part inside it. Works on a parsed :mod:`xml.dom.minidom`
document, before it is written.
"""
from __future__ import annotations

import re
from xml.dom import minidom

Rect = tuple[float, float, float, float]        # left, top, right, bottom
Point = tuple[float, float]

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TRANSLATE = re.compile(r"matrix\(\s*1[ ,]+0[ ,]+0[ ,]+1[ ,]+([^ ,)]+)[ ,]+([^ ,)]+)\s*\)")


def clip_rects(document: minidom.Document) -> dict[str, Rect]:
    """The bounding rectangle of each ``<clipPath>``'s path, by its id."""
    rects = {}
    for node in document.getElementsByTagName("clipPath"):
        points = [p for path in node.getElementsByTagName("path")
                  for sub in subpaths(path.getAttribute("d")) for p in sub]
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            rects[node.getAttribute("id")] = (min(xs), min(ys), max(xs), max(ys))
    return rects


def subpaths(d: str) -> list[list[Point]]:
    """The polylines of path data made of ``M``/``L`` commands (absolute) and ``Z``."""
    out: list[list[Point]] = []
    for command, body in re.findall(r"([MLZmlz])([^MLZmlz]*)", d):
        numbers = [float(n) for n in _NUMBER.findall(body)]
        points = list(zip(numbers[0::2], numbers[1::2]))
        if command in "Mm":
            out.append(points[:1])
            points = points[1:]
        elif command in "Zz":
            if out and out[-1]:
                out[-1].append(out[-1][0])
            continue
        if not out:
            out.append([])
        out[-1].extend(points)
    return [sub for sub in out if sub]


def clip_segment(a: Point, b: Point, rect: Rect) -> tuple[Point, Point] | None:
    """The part of segment ``a``-``b`` inside ``rect`` (Liang-Barsky), or None."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = x1 - x0, y1 - y0
    lo, hi = 0.0, 1.0
    for p, q in ((-dx, x0 - rect[0]), (dx, rect[2] - x0), (-dy, y0 - rect[1]), (dy, rect[3] - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            lo = max(lo, t)
        else:
            hi = min(hi, t)
        if lo > hi:
            return None
    return (x0 + lo * dx, y0 + lo * dy), (x0 + hi * dx, y0 + hi * dy)


def clip_polyline(points: list[Point], rect: Rect) -> list[list[Point]]:
    """The pieces of a polyline inside ``rect``."""
    if len(points) == 1:
        x, y = points[0]
        return [points] if rect[0] <= x <= rect[2] and rect[1] <= y <= rect[3] else []
    pieces: list[list[Point]] = []
    for a, b in zip(points[:-1], points[1:]):
        cut = clip_segment(a, b, rect)
        if cut is None:
            continue
        start, end = cut
        if pieces and pieces[-1][-1] == start:
            pieces[-1].append(end)
        else:
            pieces.append([start, end])
    return pieces


def clip_polygon(points: list[Point], rect: Rect) -> list[Point]:
    """The part of a polygon inside ``rect`` (Sutherland-Hodgman)."""
    edges = ((0, rect[0], True), (0, rect[2], False), (1, rect[1], True), (1, rect[3], False))
    out = list(points)
    for axis, bound, low in edges:
        if not out:
            break
        inside = (lambda p: p[axis] >= bound) if low else (lambda p: p[axis] <= bound)
        kept: list[Point] = []
        for k, current in enumerate(out):
            previous = out[k - 1]
            if inside(current):
                if not inside(previous):
                    kept.append(_cross(previous, current, axis, bound))
                kept.append(current)
            elif inside(previous):
                kept.append(_cross(previous, current, axis, bound))
        out = kept
    return out


def _cross(a: Point, b: Point, axis: int, bound: float) -> Point:
    t = (bound - a[axis]) / (b[axis] - a[axis])
    x, y = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
    return (bound, y) if axis == 0 else (x, bound)


def _path_data(pieces: list[list[Point]], closed: bool) -> str:
    return " ".join("M" + " L".join(f"{x:.6g},{y:.6g}" for x, y in piece) + (" Z" if closed else "")
                    for piece in pieces if piece)


def _offset(node) -> Point | None:
    """The translation of ``node``'s transform ((0, 0) without one); None for any other
    transform, whose coordinates are left alone."""
    transform = node.getAttribute("transform") if node.hasAttribute("transform") else ""
    if not transform:
        return 0.0, 0.0
    match = _TRANSLATE.fullmatch(transform.strip())
    return (float(match.group(1)), float(match.group(2))) if match else None


def _filled(node) -> bool:
    while node is not None and node.nodeType == node.ELEMENT_NODE:
        if node.hasAttribute("fill"):
            return node.getAttribute("fill") != "none"
        node = node.parentNode
    return False


def clip_document(document: minidom.Document) -> None:
    """Cut every path and polyline drawn under a ``clip-path`` to that clip's rectangle."""
    rects = clip_rects(document)
    _walk(document.documentElement, None, (0.0, 0.0), rects)


def _walk(node, rect: Rect | None, offset: Point | None, rects: dict[str, Rect]) -> None:
    for child in list(node.childNodes):
        if child.nodeType != child.ELEMENT_NODE or child.tagName == "clipPath":
            continue
        inner_rect = rect
        reference = child.getAttribute("clip-path") if child.hasAttribute("clip-path") else ""
        match = re.fullmatch(r"url\(#(.+)\)", reference)
        if match and match.group(1) in rects:
            inner_rect = rects[match.group(1)]
        own = _offset(child)
        inner_offset = (None if offset is None or own is None
                        else (offset[0] + own[0], offset[1] + own[1]))
        if inner_rect is not None and inner_offset is not None \
                and child.tagName in ("path", "polyline"):
            _clip_element(child, inner_rect, inner_offset)
        else:
            _walk(child, inner_rect, inner_offset, rects)


def _clip_element(node, rect: Rect, offset: Point) -> None:
    """Rewrite ``node`` (a path or polyline whose coordinates are shifted by ``offset``)
    as the path of its part inside ``rect``; removed if nothing is."""
    if node.tagName == "polyline":
        numbers = [float(n) for n in _NUMBER.findall(node.getAttribute("points"))]
        shapes = [list(zip(numbers[0::2], numbers[1::2]))]
    else:
        shapes = subpaths(node.getAttribute("d"))
    local = (rect[0] - offset[0], rect[1] - offset[1], rect[2] - offset[0], rect[3] - offset[1])
    filled = _filled(node)
    if filled:
        pieces = [clip_polygon(shape, local) for shape in shapes]
    else:
        pieces = [piece for shape in shapes for piece in clip_polyline(shape, local)]
    data = _path_data(pieces, closed=filled)
    if not data:
        node.parentNode.removeChild(node)
        return
    if node.tagName == "polyline":
        path = node.ownerDocument.createElement("path")
        for name, value in node.attributes.items():
            if name != "points":
                path.setAttribute(name, value)
        node.parentNode.replaceChild(path, node)
        node = path
    node.setAttribute("d", data)


__all__ = ["clip_document", "clip_rects", "subpaths", "clip_segment", "clip_polyline",
           "clip_polygon"]
