package sfere

// Evict completes the eviction of ev.Stream from a [Store]: it ends the
// stream (its [Hub.Serve] stops writing, and its client's response ends),
// calls fn with ev (unless fn is nil), then lets the stream's Serve return
// and runs the stream's [Stream.AfterEnd] functions.
//
// It is how a Store written outside this package keeps the [Store]
// contract: it calls Evict once for every stream that leaves it, whatever
// the cause, after releasing its own locks, since fn may call the store. A
// stream that leaves a store without Evict is never ended, and its Serve
// never returns.
func Evict(fn EvictFunc, ev Eviction) {
	ev.Stream.evict(ev)
	defer ev.Stream.finish()
	if fn != nil {
		fn(ev)
	}
}
