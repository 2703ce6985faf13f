"""The token output folder and its contract: atomic shards and resume keys (`folder`, `shards`),
the writer lease, the run fingerprint and codec identity, the run record, the versioned
schemas, the dataset card and the upload to the Hugging Face Hub."""
