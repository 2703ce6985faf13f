"""The tokenize run: settings (`config`), checks before Ray starts (`preflight`), the Ray Data
wiring (`run`), its Ray adapters (`stages`) and the encode step they wrap (`encode`)."""
