package sfere

// Evict completes the eviction of ev.Stream from a [Store]: it ends the
// stream (its [Hub.Serve] stops writing, and its client's response ends),
// calls fn with ev (unless fn is nil), then lets the stream's Serve return
// and runs the stream's [Stream.AfterEnd] functions.
//
// It is how a Store written outside this package keeps the Store contract:
// the store calls Evict exactly once for every stream that leaves it,
// whatever the cause (replaced, purged, expired, ...), after releasing its
// own locks, since fn may call the store. [MemoryStore] and [TTLStore] do
// the same. A stream that leaves a store without Evict is never ended, and
// its Serve never returns. The storetest package checks a Store for this
// and the rest of the contract.
func Evict(fn EvictFunc, ev Eviction) {
	ev.Stream.evict()
	defer ev.Stream.finish()
	if fn != nil {
		fn(ev)
	}
}
