package redact

// mark says what to do with each token: constants are hidden.
func mark(src string, toks []token, depth int) []action {
	act := make([]action, len(toks))
	for i, t := range toks {
		act[i].hide = t.kind.constant()
	}
	return act
}
