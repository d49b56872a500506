package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rogpeppe/go-internal/diff"

	"kwl.dev/kwl/lang"
)

func runFmt(env *cmdEnv, args []string) int {
	c := commands["fmt"]
	fs := c.newFlags(env)
	write := fs.Bool("w", false, "rewrite the files instead of printing them")
	showDiff := fs.Bool("d", false, "print a unified diff instead of the formatted text")
	list := fs.Bool("l", false, "list the files whose formatting differs instead of printing them")
	check := fs.Bool("check", false, "change nothing; exit 1 when a file's formatting differs (for CI)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	files := fs.Args()
	if len(files) == 0 {
		if *write {
			fmt.Fprintf(env.stderr, "kwl fmt: -w needs files to rewrite\n")
			return exitUsage
		}
		files = []string{"-"}
	}
	code := exitOK
	files, err := expandDirs(files)
	if err != nil {
		return ioError(env, "fmt", err)
	}
	for _, name := range files {
		src, err := readSource(env, name)
		if err != nil {
			code = max(code, ioError(env, "fmt", err))
			continue
		}
		f, diags := lang.Parse(name, src)
		if diags.HasErrors() {
			printDiags(env, diags, map[string][]byte{name: src})
			code = max(code, exitFail)
			continue
		}
		out := lang.Format(f)
		differs := !bytes.Equal(src, out)
		if differs && *check {
			code = max(code, exitFail)
		}
		if *list {
			if differs {
				fmt.Fprintln(env.stdout, name)
			}
			if !*write {
				continue
			}
		}
		if *showDiff {
			if d := diff.Diff(name+".orig", src, name, out); len(d) > 0 {
				env.stdout.Write(d)
			}
		}
		if *write {
			if !bytes.Equal(src, out) && name != "-" {
				if err := writeFile(name, out); err != nil {
					code = max(code, ioError(env, "fmt", err))
				}
			}
			continue
		}
		if !*showDiff && !*check {
			env.stdout.Write(out)
		}
	}
	return code
}

// expandDirs replaces each directory of names by the .kwl files under
// it, in lexical order, as gofmt does with .go files.
func expandDirs(names []string) ([]string, error) {
	var out []string
	for _, name := range names {
		st, err := os.Stat(name)
		if name == "-" || err != nil || !st.IsDir() {
			out = append(out, name) // an unreadable file is reported when read
			continue
		}
		err = filepath.WalkDir(name, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && filepath.Ext(path) == ".kwl" {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeFile replaces name's content through a temporary file and a
// rename, so that a failure leaves the old file whole; it keeps the mode.
func writeFile(name string, data []byte) error {
	st, err := os.Stat(name)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".kwlfmt*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), st.Mode().Perm())
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), name)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", name, werr)
	}
	return nil
}
