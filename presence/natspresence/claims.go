package natspresence

// Claims returns how many claims this node asserts in the room's bucket
// (re-asserted every [Options.Interval] while it holds their people, or
// while they are away within their resume window), and how many of them
// are of people away.
func (c *Cluster) Claims() (asserted, away int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cr := range c.mine {
		if cr.Away {
			away++
		}
	}
	return len(c.mine), away
}
