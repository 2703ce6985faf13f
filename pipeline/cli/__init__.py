"""The jobs' command lines: one module per job (`tokenize`, `spot_check`, `export`) over `common`
(parsers generated from the config dataclasses, exit codes, logging, the Ray session)."""
