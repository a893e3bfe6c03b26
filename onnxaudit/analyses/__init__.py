"""Stage 3 of the pipeline: analyses on features and gradients; they return results only."""
