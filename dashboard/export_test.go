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
