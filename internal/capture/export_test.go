package capture

// Pid is tcpdump's process id (tests pause it to overflow its ring).
func (c *Capture) Pid() int { return c.cmd.Process.Pid }
