package dashboard

// samplerRunning reports whether a sampler goroutine is running (or
// about to): one was started and has not returned.
func (d *Dashboard) samplerRunning() bool {
	d.mu.Lock()
	done := d.stopped
	d.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// samples returns how many samples the sampler took.
func (d *Dashboard) sampleCount() uint64 { return d.samples.Load() }

// SamplerRunning and SampleCount let the external tests look inside.
var (
	SamplerRunning = (*Dashboard).samplerRunning
	SampleCount    = (*Dashboard).sampleCount
)

// held returns how many plot points and open pages the dashboard holds.
func (d *Dashboard) held() (points, conns int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.points), len(d.conns)
}

// Held lets the external tests look at what a dashboard holds.
var Held = (*Dashboard).held
