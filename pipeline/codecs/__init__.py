"""Audio codecs. Each codec takes tensors/arrays, never paths, and knows nothing of Ray."""
