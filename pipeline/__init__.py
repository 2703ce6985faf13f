"""Audio tokenization pipeline: audio collections → SemantiCodec token corpora.

`import pipeline` is cheap and works on a CPU-only machine without weights; heavy
dependencies (torch, ray, ...) are imported by the modules that need them.
"""

__version__ = "0.1.0"
