"""Training, σ_y estimation and ONNX export. The only part of flowdec that imports torch.

Install with ``pip install flowdec[train]``.
"""
