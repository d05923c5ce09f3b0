"""Report renderers: each returns bytes; `auditor.fileio` writes them."""
