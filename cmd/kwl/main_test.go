package main

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

var update = flag.Bool("update", false, "rewrite the cmp files of testdata/script/*.txtar from the actual output")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"kwl": func() {
			os.Exit(run(&cmdEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
		},
	})
}

// TestScript runs the CLI scripts of testdata/script. Each script's work
// directory holds a copy of examples/ and a 10 MB file (big.kwl) for the
// size limit.
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:           "../../testdata/script",
		UpdateScripts: *update,
		Setup: func(env *testscript.Env) error {
			return copyExamples(env.WorkDir)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"bigfile": bigFile,
			"exits":   exits,
			"mkpcap":  mkpcap,    // sim_test.go
			"kwlgen":  kwlgenCmd, // sim_test.go
		},
	})
}

func copyExamples(work string) error {
	files, err := filepath.Glob("../../examples/*.kwl")
	if err != nil {
		return err
	}
	dir := filepath.Join(work, "examples")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// bigFile writes a policy of about N megabytes: "bigfile NAME N".
func bigFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: bigfile NAME MEGABYTES")
	}
	var mb int
	for _, c := range args[1] {
		mb = mb*10 + int(c-'0')
	}
	line := []byte("limit ssh 3/60s per source # a line of a very long policy\n")
	buf := make([]byte, 0, mb<<20+len(line))
	for len(buf) < mb<<20 {
		buf = append(buf, line...)
	}
	if err := os.WriteFile(ts.MkAbs(args[0]), buf, 0o644); err != nil {
		ts.Fatalf("%v", err)
	}
}

// exits runs a command and checks its exit status, keeping its stdout
// and stderr for the stdout and stderr commands: "exits 2 kwl check x".
func exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits STATUS COMMAND [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad status %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}
