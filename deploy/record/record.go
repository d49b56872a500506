// Package record keeps the record of what kwl deployed, for `kwl restore`
// to load it again at boot.
//
// A record is a directory (DefaultDir, /var/lib/kwl/deployed, for the
// host's own network namespace) of three files:
//
//	record.json          what was deployed: backend, table, the policy's
//	                     file name and SHA-256, the time, the kwl version;
//	                     or, after an undeploy, that nothing is to be loaded
//	policy-HASH.kwl      the policy text as deployed
//	closed.json          the fail-closed policy: the deployed policy's
//	                     guarded services and their allow statements
//
// Restore recompiles the recorded policy text with the running kwl (a
// policy means the same on every build) and checks its hash first. When
// it cannot (the record is missing or corrupt, the policy no longer
// compiles, the kernel refuses it), it loads the fail-closed policy
// instead: every door shut, so new connections to every guarded service
// are dropped except from the sources an allow statement names, and the
// services' DNAT stays. Services that are only limited are left alone.
// closed.json stands apart from record.json so that one damaged file
// does not take the other with it.
//
// Every file is written atomically: a temporary file in the same
// directory, fsync, rename, fsync of the directory. Save writes
// closed.json, then the policy under a name of its own hash, then
// record.json, and only then removes the policy files no record names: a
// crash at any point leaves a record.json that names a complete policy
// file. The files hold knock ports, which are secrets: the directory is
// 0700 and the files 0600.
package record

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kwl.dev/kwl/lang"
)

// DefaultDir is where kwl deploy records a deploy into the host's own
// network namespace, and where kwl restore reads it.
const DefaultDir = "/var/lib/kwl/deployed"

// DirFor returns the record directory of a deploy into the network
// namespace netns ("" for the host's own): dir when it is set, else
// DefaultDir for the host's namespace, else "": a named namespace does
// not survive a reboot, and its deploys are recorded only where told.
func DirFor(dir, netns string) string {
	if dir != "" || netns != "" {
		return dir
	}
	return DefaultDir
}

// The names of the record's files.
const (
	RecordFile = "record.json"
	ClosedFile = "closed.json"
)

// format is the version of the files' layout.
const format = 1

// The states of a record.
const (
	Deployed   = "deployed"
	Undeployed = "undeployed"
)

// Record says what was deployed last, or that it was undeployed.
type Record struct {
	Format int `json:"format"`
	// State is Deployed or Undeployed.
	State string `json:"state"`
	// Backend is "nft" or "iptables"; Table the nft table's name.
	Backend string `json:"backend"`
	Table   string `json:"table"`
	// File is the policy's file name as kwl deploy was given it.
	File string `json:"file,omitempty"`
	// Policy names the file of the record's directory that holds the
	// policy text; SHA256 is the text's hash, in hex.
	Policy string `json:"policy,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Time is when the record was written; Kwl the version that wrote it.
	Time time.Time `json:"time"`
	Kwl  string    `json:"kwl"`

	// Text is the policy text (not part of record.json).
	Text []byte `json:"-"`
	// Dir is the directory the record was read from.
	Dir string `json:"-"`
}

// PolicyPath is the path of the recorded policy text.
func (r *Record) PolicyPath() string { return filepath.Join(r.Dir, r.Policy) }

// Closed is the fail-closed policy of a deploy: its guarded services with
// their ports and DNAT, and the allow statements that name them.
type Closed struct {
	Format  int    `json:"format"`
	Backend string `json:"backend"`
	Table   string `json:"table"`
	// SHA256 is the hash of the policy it was made from.
	SHA256   string          `json:"sha256"`
	Services []ClosedService `json:"services"`
	Allows   []ClosedAllow   `json:"allows"`
}

// ClosedService is a guarded service.
type ClosedService struct {
	Name    string   `json:"name"`
	Ports   []string `json:"ports"`             // "tcp/22"
	Forward string   `json:"forward,omitempty"` // the internal host, for a DNAT service
}

// ClosedAllow is an allow statement of a guarded service.
type ClosedAllow struct {
	Service string   `json:"service"`
	From    []string `json:"from,omitempty"` // prefixes; none: every source
	Family  string   `json:"family,omitempty"`
}

// Hash returns the hex SHA-256 of a policy text.
func Hash(text []byte) string {
	h := sha256.Sum256(text)
	return hex.EncodeToString(h[:])
}

// ClosedOf returns the fail-closed policy of a checked policy.
func ClosedOf(p *lang.Policy, backend, table string, text []byte) *Closed {
	c := &Closed{Format: format, Backend: backend, Table: table, SHA256: Hash(text),
		Services: []ClosedService{}, Allows: []ClosedAllow{}}
	for _, s := range p.Services {
		if !s.Guarded {
			continue
		}
		cs := ClosedService{Name: s.Name}
		for _, pt := range s.Ports {
			cs.Ports = append(cs.Ports, pt.String())
		}
		if s.Forward.IsValid() {
			cs.Forward = s.Forward.String()
		}
		c.Services = append(c.Services, cs)
	}
	for _, a := range p.Allows {
		if !a.Service.Guarded {
			continue
		}
		ca := ClosedAllow{Service: a.Service.Name, Family: familyName(a.Family)}
		for _, f := range a.From {
			ca.From = append(ca.From, f.String())
		}
		c.Allows = append(c.Allows, ca)
	}
	return c
}

func familyName(f lang.Family) string {
	switch f {
	case lang.IPv4:
		return "ipv4"
	case lang.IPv6:
		return "ipv6"
	}
	return ""
}

// Policy returns the fail-closed policy as IR, for the backends to lower:
// its services are guarded and no door opens them. It checks every field
// of c, so that a damaged file is an error, never a looser policy.
func (c *Closed) Policy(file string) (*lang.Policy, error) {
	if c.Format != format {
		return nil, fmt.Errorf("%s: format %d, want %d", file, c.Format, format)
	}
	if err := checkTarget(c.Backend, c.Table); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	p := &lang.Policy{File: file}
	// The record's statements have no source; they are numbered in the
	// order the record lists them, so that each keeps its own identity.
	id := 0
	ref := func() lang.Ref {
		id++
		return lang.Ref{ID: id, Pos: lang.Pos{File: file}}
	}
	byName := map[string]*lang.Service{}
	for _, cs := range c.Services {
		if cs.Name == "" || byName[cs.Name] != nil {
			return nil, fmt.Errorf("%s: service %q: empty or repeated name", file, cs.Name)
		}
		if len(cs.Ports) == 0 {
			return nil, fmt.Errorf("%s: service %s has no ports", file, cs.Name)
		}
		s := &lang.Service{Ref: ref(), Name: cs.Name, Guarded: true}
		for _, ps := range cs.Ports {
			pt, err := parsePort(ps)
			if err != nil {
				return nil, fmt.Errorf("%s: service %s: %w", file, cs.Name, err)
			}
			s.Ports = append(s.Ports, pt)
		}
		if cs.Forward != "" {
			a, err := netip.ParseAddr(cs.Forward)
			if err != nil {
				return nil, fmt.Errorf("%s: service %s: forward: %w", file, cs.Name, err)
			}
			s.Forward = a
		}
		byName[cs.Name] = s
		p.Services = append(p.Services, s)
	}
	for _, ca := range c.Allows {
		s := byName[ca.Service]
		if s == nil {
			return nil, fmt.Errorf("%s: allow of unknown service %q", file, ca.Service)
		}
		a := &lang.Allow{Ref: ref(), Service: s}
		switch ca.Family {
		case "":
		case "ipv4":
			a.Family = lang.IPv4
		case "ipv6":
			a.Family = lang.IPv6
		default:
			return nil, fmt.Errorf("%s: allow %s: unknown family %q", file, ca.Service, ca.Family)
		}
		for _, f := range ca.From {
			pf, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%s: allow %s: %w", file, ca.Service, err)
			}
			a.From = append(a.From, pf)
		}
		p.Allows = append(p.Allows, a)
	}
	return p, nil
}

// Describe lists the guarded services, as "ssh (tcp/22)", for messages.
func (c *Closed) Describe() string {
	if len(c.Services) == 0 {
		return "no service (the policy guards none)"
	}
	var parts []string
	for _, s := range c.Services {
		parts = append(parts, s.Name+" ("+strings.Join(s.Ports, ", ")+")")
	}
	return strings.Join(parts, ", ")
}

func parsePort(s string) (lang.Port, error) {
	proto, num, ok := strings.Cut(s, "/")
	var p lang.Port
	switch proto {
	case "tcp":
		p.Proto = lang.TCP
	case "udp":
		p.Proto = lang.UDP
	default:
		ok = false
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if !ok || err != nil || n == 0 {
		return p, fmt.Errorf("bad port %q (want tcp/N or udp/N)", s)
	}
	p.Num = uint16(n)
	return p, nil
}

func checkTarget(backend, table string) error {
	if backend != "nft" && backend != "iptables" {
		return fmt.Errorf("unknown backend %q", backend)
	}
	if table == "" || len(table) > 256 || strings.ContainsAny(table, "/\x00\n") {
		return fmt.Errorf("bad table name %q", table)
	}
	return nil
}

// Save records a deploy in dir: closed, the policy text, then the
// record, each written atomically (see the package comment).
func Save(dir string, r *Record, closed *Closed) error {
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	r.Format, r.State, r.Dir = format, Deployed, dir
	r.SHA256 = Hash(r.Text)
	r.Policy = "policy-" + r.SHA256[:16] + ".kwl"
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	cj, err := json.MarshalIndent(closed, "", "\t")
	if err != nil {
		return err
	}
	rj, err := json.MarshalIndent(r, "", "\t")
	if err != nil {
		return err
	}
	if err := writeAtomic(dir, ClosedFile, append(cj, '\n')); err != nil {
		return err
	}
	if err := writeAtomic(dir, r.Policy, r.Text); err != nil {
		return err
	}
	if err := writeAtomic(dir, RecordFile, append(rj, '\n')); err != nil {
		return err
	}
	return removeStale(dir, r.Policy)
}

// MarkUndeployed replaces the record of dir with one that says nothing is
// to be loaded, then removes the policy and its fail-closed policy. It
// does nothing when dir holds no record, or one of another backend or
// table, which the undeploy did not remove.
func MarkUndeployed(dir, backend, table, kwl string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, RecordFile)); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	unlock, err := lock(dir)
	if err != nil {
		return false, err
	}
	defer unlock()
	old, err := Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err == nil && (old.Backend != backend || old.Table != table) {
		return false, nil
	}
	r := &Record{Format: format, State: Undeployed, Backend: backend, Table: table, Time: time.Now().UTC(), Kwl: kwl}
	rj, err := json.MarshalIndent(r, "", "\t")
	if err != nil {
		return false, err
	}
	if err := writeAtomic(dir, RecordFile, append(rj, '\n')); err != nil {
		return false, err
	}
	if err := os.Remove(filepath.Join(dir, ClosedFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return true, fmt.Errorf("record: %w", err)
	}
	return true, removeStale(dir, "")
}

// Load reads the record of dir and, for a deploy, the policy text,
// checked against its hash. An error wrapping os.ErrNotExist means there
// is no record.
func Load(dir string) (*Record, error) {
	p := filepath.Join(dir, RecordFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	r := &Record{Dir: dir}
	if err := strictJSON(b, r); err != nil {
		return nil, fmt.Errorf("%s: corrupt record: %w", p, err)
	}
	if r.Format != format {
		return nil, fmt.Errorf("%s: format %d, want %d", p, r.Format, format)
	}
	if err := checkTarget(r.Backend, r.Table); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	switch r.State {
	case Undeployed:
		return r, nil
	case Deployed:
	default:
		return nil, fmt.Errorf("%s: unknown state %q", p, r.State)
	}
	if r.Policy == "" || r.Policy != filepath.Base(r.Policy) || !strings.HasPrefix(r.Policy, "policy-") {
		return nil, fmt.Errorf("%s: bad policy file name %q", p, r.Policy)
	}
	text, err := os.ReadFile(r.PolicyPath())
	if err != nil {
		return nil, fmt.Errorf("recorded policy: %w", err)
	}
	if h := Hash(text); h != r.SHA256 {
		return nil, fmt.Errorf("%s: corrupt policy: SHA-256 %s, the record says %s", r.PolicyPath(), h, r.SHA256)
	}
	r.Text = text
	return r, nil
}

// LoadClosed reads the fail-closed policy of dir.
func LoadClosed(dir string) (*Closed, error) {
	p := filepath.Join(dir, ClosedFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	c := &Closed{}
	if err := strictJSON(b, c); err != nil {
		return nil, fmt.Errorf("%s: corrupt fail-closed policy: %w", p, err)
	}
	if _, err := c.Policy(p); err != nil {
		return nil, err
	}
	return c, nil
}

func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

// lock creates dir if need be and takes its lock (flock on dir/.lock),
// waiting for another kwl writing the same record.
func lock(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("record: lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// writeAtomic writes dir/name so that it holds either its old content or
// data, whole, whatever happens: a temporary file, fsync, rename, fsync
// of the directory.
func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("record %s: %w", filepath.Join(dir, name), err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("record: fsync %s: %w", dir, err)
	}
	return nil
}

// removeStale removes the policy files of dir but keep, and temporary
// files a crash left.
func removeStale(dir, keep string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		stale := strings.HasPrefix(n, "policy-") && strings.HasSuffix(n, ".kwl") && n != keep
		if stale || strings.Contains(n, ".tmp-") {
			if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("record: %w", err)
			}
		}
	}
	return nil
}
