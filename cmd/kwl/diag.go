package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"kwl.dev/kwl/lang"
)

// maxPolicySize caps what kwl reads as a policy. Real policies are a few
// kilobytes; a file of megabytes is a mistake (a capture or a log given in
// the wrong place), and refusing it early keeps the error clear.
const maxPolicySize = 4 << 20

// errNotPolicy marks files that are not policy text: a directory, a
// binary file, an oversized file. Commands report them as I/O errors
// (exit 2), like a missing file: the file could not be read as a policy.
var errNotPolicy = errors.New("not a policy file")

// readSource reads a policy file, refusing directories, files over
// maxPolicySize and files that are not UTF-8 text. "-" is standard input.
func readSource(env *cmdEnv, name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = env.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			return nil, fmt.Errorf("%s: is a directory, not a policy file: %w", name, errNotPolicy)
		}
		r = f
	}
	src, err := io.ReadAll(io.LimitReader(r, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(src) > maxPolicySize {
		return nil, fmt.Errorf("%s: larger than %d MiB, too large for a policy: %w", name, maxPolicySize>>20, errNotPolicy)
	}
	if i := bytes.IndexByte(src, 0); i >= 0 {
		return nil, fmt.Errorf("%s: binary file (NUL byte at offset %d), not a policy: %w", name, i, errNotPolicy)
	}
	if !utf8.Valid(src) {
		off := 0
		for off < len(src) {
			r, size := utf8.DecodeRune(src[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return nil, fmt.Errorf("%s: not UTF-8 text (bad byte at offset %d), not a policy: %w", name, off, errNotPolicy)
	}
	return src, nil
}

// loadPolicy reads and checks the policy file name for command cmd. It
// returns the policy, or nil and the exit code: 2 for a file that could
// not be read, 1 for errors (printed with their lines).
func loadPolicy(env *cmdEnv, cmd, name string) (*lang.Policy, int) {
	src, err := readSource(env, name)
	if err != nil {
		return nil, ioError(env, cmd, err)
	}
	pol, diags := lang.Load(name, src)
	if diags.HasErrors() {
		printDiags(env, diags, map[string][]byte{name: src})
		return nil, exitFail
	}
	return pol, exitOK
}

// ioError prints an error about a file for command cmd and returns the
// exit code for it.
func ioError(env *cmdEnv, cmd string, err error) int {
	fmt.Fprintf(env.stderr, "kwl %s: %v\n", cmd, trimErr(err))
	return exitUsage
}

// trimErr drops the errNotPolicy marker from a message.
func trimErr(err error) string {
	s := err.Error()
	if errors.Is(err, errNotPolicy) {
		s = s[:len(s)-len(": "+errNotPolicy.Error())]
	}
	return s
}

// printDiags prints diagnostics but notes (lang.Note: what check,
// compile and deploy show with --notes) as text on stderr, with source
// lines.
func printDiags(env *cmdEnv, diags lang.Diagnostics, srcs map[string][]byte) {
	printShown(env, (*lintFlags)(nil).filter(diags), srcs)
}

// printShown prints diagnostics as text on stderr, with source lines.
func printShown(env *cmdEnv, diags lang.Diagnostics, srcs map[string][]byte) {
	if len(diags) > 0 {
		diags.Print(env.stderr, srcs)
	}
}
