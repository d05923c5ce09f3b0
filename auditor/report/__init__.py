"""Report renderers: each returns bytes; `auditor.io` writes them."""
