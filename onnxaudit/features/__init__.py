"""Stage 2 of the pipeline: onnxruntime sessions, streamed feature extraction, input gradients."""
