package main

func init() {
	register(&command{
		name:  "status",
		usage: "kwl status [--format text|json] [--netns NAME] [--table NAME]",
		short: "show the live doors, limits and bans",
		run:   runStatus,
	})
}
