//go:build !linux

package netns

import "errors"

// Do runs fn inside the namespace on Linux; elsewhere there are no
// network namespaces, and it returns an error without running fn.
func (ns *NS) Do(fn func() error) error {
	return errors.New("netns: network namespaces need Linux")
}
