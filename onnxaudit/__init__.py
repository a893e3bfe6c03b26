"""onnxaudit: audit ONNX image classifiers for what they learned and whether they hide a backdoor."""

__version__ = "0.1.0"
