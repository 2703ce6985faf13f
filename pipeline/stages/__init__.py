"""Pipeline stages: plain per-item/per-batch functions plus the thin Ray adapters around them."""
