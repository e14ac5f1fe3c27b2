//go:build benchprofile

package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// A CPU profile of the agent process for the node benchmarks: built only with
// -tags benchprofile (never in the release binary). LOGAGENT_CPUPROFILE names
// the file; the profile covers the process from its start until SIGUSR1.
func init() {
	path := os.Getenv("LOGAGENT_CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGUSR1)
	go func() {
		<-stop
		pprof.StopCPUProfile()
		f.Close()
	}()
}
