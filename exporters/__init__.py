"""ONNX export of the attention-producing graph and the ONNX Runtime backend.

Not built yet (issue #6): `bye-audit` runs stage 1 with PyTorch only.
"""
