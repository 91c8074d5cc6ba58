package presence

// OnDiff adds f to what the tracker tells of every non-empty batch from
// now on, after [Options.OnDiff] and as it is told: before the batch is
// sent, with the tracker's lock held, so f must not block or call the
// tracker. Like [sfere.Hub.OnOpen], it lets code that gets a tracker
// already made (a dashboard) follow its arrivals and departures without
// being wired into its options.
func (t *Tracker) OnDiff(f func(Diff)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.onDiffs = append(t.onDiffs, f)
}
