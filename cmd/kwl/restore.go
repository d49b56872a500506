package main

func init() {
	register(&command{
		name:  "restore",
		usage: "kwl restore [--record-dir DIR] [--netns NAME --record-dir DIR] [--state-dir DIR]",
		short: "load the last deployed policy again (at boot)",
		run:   runRestore,
	})
}
