import io

from pypdf import PdfReader

from auditor.config import AuditConfig
from auditor.report.html import MAX_FLAGGED_ROWS, render_html
from auditor.report.pdf import render_pdf


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_pdf_of_10000_flagged_samples_is_capped_and_holds_the_verdict(synthetic_audit):
    # BYE flags the low half outright; the minority method would (rightly) not call half the data a backdoor.
    ds, features, a = synthetic_audit(n=20_000, n_low=10_000, config=AuditConfig.of(method="bye"))
    assert a.verdict == "fail" and len(a.flagged) == 10_000
    pdf = render_pdf(render_html(a, features.meta, ds))
    assert pdf.startswith(b"%PDF-")
    text = _text(pdf)
    assert "Verdict: FAIL" in text
    ranked = sorted(a.flagged, key=lambda f: (f.score, f.index))  # the report's order: most suspicious first
    assert ranked[0].id in text
    assert ranked[MAX_FLAGGED_ROWS - 1].id in text and ranked[MAX_FLAGGED_ROWS].id not in text
    assert f"and {10_000 - MAX_FLAGGED_ROWS:,} more" in text
    assert "page 1 of" in text and "50% of the data is flagged" in text
    assert len(PdfReader(io.BytesIO(pdf)).pages) < 40  # capped: readable, not 10,000 rows


def test_the_report_is_the_same_bytes_apart_from_its_date_and_id(synthetic_audit):
    ds, features, a = synthetic_audit()
    one = {"report_id": "aaaa-bbbb-cccc-dddd", "audited_at": "2026-01-02T03:04:05Z"}
    two = {"report_id": "1111-2222-3333-4444", "audited_at": "2027-06-07T08:09:10Z"}
    html = render_html(a, features.meta, ds, features=features, about=one)
    assert render_html(a, features.meta, ds, features=features, about=one) == html
    pdf = render_pdf(html)
    assert render_pdf(html) == pdf
    other = render_html(a, features.meta, ds, features=features, about=two)
    assert other != html
    swapped = (html.decode().replace(one["report_id"], two["report_id"])
               .replace(one["audited_at"], two["audited_at"]).replace("2026-01-02 03:04:05 UTC",
                                                                      "2027-06-07 08:09:10 UTC"))
    assert swapped == other.decode()  # nothing else differs


def test_the_pdf_is_pdf_a_3b_with_fonts_embedded_page_numbers_and_the_report_id(synthetic_audit):
    ds, features, a = synthetic_audit()
    pdf = render_pdf(render_html(a, features.meta, ds, features=features,
                                 about={"report_id": "aaaa-bbbb-cccc-dddd",
                                        "audited_at": "2026-01-02T03:04:05Z"}))
    reader = PdfReader(io.BytesIO(pdf))
    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data()
    assert b'pdfaid:part="3"' in xmp and b'pdfaid:conformance="B"' in xmp
    assert reader.metadata["/CreationDate"] == "D:20260102030405Z"
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            desc = (font.get("/FontDescriptor")
                    or font["/DescendantFonts"][0].get_object()["/FontDescriptor"]).get_object()
            assert any(k.startswith("/FontFile") for k in desc), font["/BaseFont"]
    n = len(reader.pages)
    assert n >= 2  # the summary, then the technical evidence on a new page
    for k, page in enumerate(reader.pages, start=1):
        text = page.extract_text()
        assert f"page {k} of {n}" in text and "bye-audit report aaaa-bbbb-cccc-dddd" in text
    first = reader.pages[0].extract_text()
    assert "Sign-off" in first and "Verdict: FAIL" in first and "Technical evidence" not in first
