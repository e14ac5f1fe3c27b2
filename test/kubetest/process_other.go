//go:build !linux

package kubetest

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent's; elsewhere
// the servers are stopped by the test's cleanup only.
func sysProcAttr() *syscall.SysProcAttr { return nil }
