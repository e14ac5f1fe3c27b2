package collector

import "time"

// readsPerSecond is how many reads a second the collector allows itself, in
// all, before it stretches read_wait (up to read_wait_max). A read costs
// the same system calls, batch, hand-over and acknowledgement whether it
// holds one line or a hundred: on a node with 2,000 containers each writing
// a few lines a second, reading every line as it comes would cost a fifth
// of a core where reading each file twice a second costs a few percent, at
// half a second of latency.
const readsPerSecond = 4000

// adaptReadWait sets the read_wait in force from the number of files read
// in the last second: active/readsPerSecond, within [read_wait,
// read_wait_max].
func (c *Collector) adaptReadWait(active int) {
	cfg := c.live()
	w := time.Duration(active) * time.Second / readsPerSecond
	w = min(w, max(cfg.ReadWaitMax, cfg.ReadWait))
	w = max(w, cfg.ReadWait)
	c.readWait.Store(int64(w))
	c.m.readWait.Set(w.Seconds())
}

// currentReadWait is the read_wait in force.
func (c *Collector) currentReadWait() time.Duration {
	if w := time.Duration(c.readWait.Load()); w > 0 {
		return w
	}
	return c.live().ReadWait
}
