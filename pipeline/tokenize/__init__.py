"""The tokenize run: settings (`config`), the plan made before Ray starts (`plan`: the checks of
`preflight`, the output's state, what is left to do), the cluster and the local paths its nodes must
see (`cluster`), the encoder actors' codec and resources (`encoder_plan`), the Ray Data wiring
(`run`), its Ray adapters (`stages`) and the encode step they wrap (`encode`)."""
