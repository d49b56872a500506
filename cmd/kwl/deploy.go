package main

func init() {
	register(&command{
		name:  "deploy",
		usage: "kwl deploy [--dry-run] [--confirm DUR] [--netns NAME] [--table NAME] [--force] [--force-foreign] FILE\n       kwl deploy --confirm-now [--netns NAME]\n       kwl deploy --backend iptables [--dry-run] [--confirm DUR] [--netns NAME] FILE",
		short: "load the policy into the running kernel, atomically",
		run:   runDeploy,
	})
}
