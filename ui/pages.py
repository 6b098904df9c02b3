"""A cited PDF page, rendered as an image with the quote's place marked.

pypdfium2 (PDFium, the PDF engine of Chromium, as a wheel with its binary: no browser-side
PDF viewer to ship or to keep in step with the Content-Security-Policy, no network) renders the
page on the server; its text page finds the quote's characters, whose boxes are painted over in
translucent yellow. The image is sent inline as a `data:` address, the only kind the page's
policy lets an image come from besides the server itself."""

from __future__ import annotations

import base64
import functools
import io
import logging
from pathlib import Path

log = logging.getLogger(__name__)

SCALE = 1.25  # pixels per PDF point: a page about 765 px wide
_SEARCH_CHARS = 80  # the quote's first characters searched for on the page


def page_image(path: str | Path, page: int, quote: str = "") -> str | None:
    """Page `page` (1-based) of the PDF at `path` as a JPEG `data:` address, the first place
    where `quote` begins marked; None when the file or the page cannot be read (the passage is
    then shown as text only)."""
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        return None
    return _render(str(path), mtime, page, " ".join(quote.split())[:_SEARCH_CHARS])


@functools.lru_cache(maxsize=32)
def _render(path: str, mtime: float, page: int, quote: str) -> str | None:
    try:
        import pypdfium2 as pdfium  # type: ignore[import-untyped]
        from PIL import ImageDraw

        pdf = pdfium.PdfDocument(path)
        try:
            if not 1 <= page <= len(pdf):
                return None
            sheet = pdf[page - 1]
            image = sheet.render(scale=SCALE).to_pil().convert("RGB")
            boxes = _quote_boxes(sheet, quote) if quote else []
            if boxes:
                height = sheet.get_height()
                overlay = image.copy()
                draw = ImageDraw.Draw(overlay)
                for left, bottom, right, top in boxes:
                    draw.rectangle(
                        (
                            left * SCALE,
                            (height - top) * SCALE,
                            right * SCALE,
                            (height - bottom) * SCALE,
                        ),
                        fill=(255, 230, 0),
                    )
                image = _blend(image, overlay)
        finally:
            pdf.close()
    except Exception:  # a page that cannot be rendered is shown as text
        log.warning("could not render page %s of %s", page, path, exc_info=True)
        return None
    out = io.BytesIO()
    image.save(out, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _quote_boxes(sheet: object, quote: str) -> list[tuple[float, float, float, float]]:
    """The text rectangles of the quote's first occurrence on the page, in PDF points; the
    search is retried on its first half when a line break made the whole fail."""
    text = sheet.get_textpage()  # type: ignore[attr-defined]
    try:
        for probe in (quote, quote[: max(20, len(quote) // 2)]):
            found = text.search(probe, match_case=False).get_next()
            if found:
                start, count = found
                n = text.count_rects(start, count)
                return [text.get_rect(i) for i in range(n)]
        return []
    finally:
        text.close()


def _blend(image: object, overlay: object) -> object:
    from PIL import Image

    return Image.blend(image, overlay, 0.45)  # type: ignore[arg-type]
