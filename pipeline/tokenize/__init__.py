"""The tokenize run: settings (`config`), checks before Ray starts (`preflight`), the cluster and the
local paths its nodes must see (`cluster`), the encoder actors' codec and resources (`encoder_plan`),
the Ray Data wiring (`run`), its Ray adapters (`stages`) and the encode step they wrap (`encode`)."""
