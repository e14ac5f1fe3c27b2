package kubetest

import "syscall"

// sysProcAttr makes the kernel kill the server if the test binary dies
// without running its cleanups (a panic in another goroutine, go test's
// timeout, SIGKILL), so no orphaned apiserver or etcd outlives the test.
// Pdeathsig fires when the thread that started the child exits; Go only ends
// threads whose goroutine exits while locked to them, which Start never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
