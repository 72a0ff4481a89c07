//go:build !linux

package nemesis

import "os/exec"

// dieWithParent does nothing here: only Linux has a parent-death signal.
func dieWithParent(*exec.Cmd) {}

// waitStopped does not wait here: there is no /proc to look at. A stopped
// process may still answer for a moment.
func waitStopped(int) error { return nil }
