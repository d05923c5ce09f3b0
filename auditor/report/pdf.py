"""report.pdf: the HTML report through WeasyPrint, with the template's print CSS."""

from __future__ import annotations

# PDF/A-3b: the archival profile (fonts embedded, colour profile, XMP
# metadata) that evidence kept for years needs.
PDF_VARIANT = "pdf/a-3b"


def render_pdf(html: bytes) -> bytes:
    """PDF bytes of a self-contained HTML report (no base URL: nothing is fetched).
    The same HTML gives the same bytes: the creation date comes from the
    report's own `dcterms.created`, and the file identifier from its content."""
    import weasyprint  # heavy (Pango); only the commands that write reports need it

    return weasyprint.HTML(string=html.decode("utf-8"), base_url=None).write_pdf(
        pdf_variant=PDF_VARIANT, uncompressed_pdf=False)
