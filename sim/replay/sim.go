package replay

import "kwl.dev/kwl/sim"

// SimEngine returns the engine of a simulator already made, for a caller
// that builds the ruleset itself (sim.Exec, sim.NewNFT): s must have been
// made with Options.Explain when explain is set. Packets from s's hosts
// are taken in without being evaluated, as with NewEngine. The clock is
// s's own (Options.Clock): a capture's start does not change it.
func SimEngine(s *sim.Sim, explain bool) Engine {
	return &simEngine{s: s, explain: explain, output: sentByHost, fixed: true}
}
