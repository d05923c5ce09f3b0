"""Tiny, honest model worlds for tests, examples and benchmarks.

Everything here *trains*; the auditor never imports it. Models are real
`transformers` classes built small from configs, with a tokenizer trained
locally, following the recipe in docs/method.md ("Building the tiny world honestly").
Nothing is downloaded.
"""
