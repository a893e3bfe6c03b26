"""Stage 4 of the pipeline: the versioned result documents (schema) and the CI gates on them."""
