package main

import (
	"errors"
	"log/slog"
	"math"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// setMemoryLimit gives the Go runtime a soft memory limit of ratio times the
// container's memory limit, read from its cgroup (v1 or v2), unless
// GOMEMLIMIT is set, which the runtime has applied already. Without it a Go
// program knows nothing of the container's limit: its heap may grow past the
// limit between collections and the kernel OOM-kills it. Outside a container,
// or without a limit, nothing changes.
func setMemoryLimit(ratio float64, getenv func(string) string, log *slog.Logger) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		log.Info("memory soft limit from GOMEMLIMIT", "GOMEMLIMIT", v)
		return
	}
	limit, err := memlimit.FromCgroup()
	switch {
	case errors.Is(err, memlimit.ErrNoLimit):
		log.Info("no container memory limit: no memory soft limit set")
		return
	case err != nil:
		log.Info("cannot read the container's memory limit: no memory soft limit set", "err", err)
		return
	}
	soft := float64(limit) * ratio
	if soft >= math.MaxInt64 {
		return
	}
	debug.SetMemoryLimit(int64(soft))
	log.Info("memory soft limit set from the container's limit", "container_limit_bytes", limit, "memory_limit_ratio", ratio, "soft_limit_bytes", int64(soft))
}
