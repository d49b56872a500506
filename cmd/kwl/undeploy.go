package main

func init() {
	register(&command{
		name:  "undeploy",
		usage: "kwl undeploy [--netns NAME] [--table NAME] [--force-foreign] [--backend nft|iptables]",
		short: "remove kwl's table and chains from the kernel",
		run:   runUndeploy,
	})
}
