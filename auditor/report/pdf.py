"""report.pdf: the HTML report through WeasyPrint, with the template's print CSS."""

from __future__ import annotations


def render_pdf(html: bytes) -> bytes:
    """PDF bytes of a self-contained HTML report (no base URL: nothing is fetched)."""
    import weasyprint  # heavy (Pango); only the commands that write reports need it

    return weasyprint.HTML(string=html.decode("utf-8"), base_url=None).write_pdf()
