package sfere

// Store keeps live streams under their keys. Two implementations ship:
// [MemoryStore] (a map) and [TTLStore] (expiry and a size cap). Both pass
// the conformance suite in package storetest, and call [Evict] (which
// fires the [EvictFunc]) exactly once for every stream that leaves them,
// whatever the reason, after releasing their locks; a Store written
// elsewhere must do the same.
//
// A Store is safe for concurrent use. Applications rarely call Put or
// PurgeStream themselves: [Hub.Serve] does, for the stream it serves.
type Store interface {
	// Put stores s under s.Key(). A different stream already stored under
	// that key is evicted with [CauseReplaced] (and so closed). Storing a
	// fresh key fires nothing.
	Put(s *Stream)
	// Get returns the stream stored under k. For a sliding-expiry store it
	// counts as an access.
	Get(k Key) (*Stream, bool)
	// Touch records an access to s (a successful write to its client): a
	// sliding-expiry store restarts its timer. It does nothing if s is no
	// longer stored.
	Touch(s *Stream)
	// Purge removes the stream stored under k with [CauseExplicit] and
	// reports whether there was one.
	Purge(k Key) bool
	// PurgeStream removes s, if it is still the stream stored under its key,
	// with the given cause and error, in O(1). It reports whether s was
	// removed by this call.
	PurgeStream(s *Stream, cause Cause, err error) bool
	// Keys returns the keys matching p, in no particular order.
	Keys(p Pattern) []Key
	// Count returns how many keys match p.
	Count(p Pattern) int
	// AppendStreams appends the streams whose keys match p to dst and
	// returns the extended slice, so a broadcast can reuse one buffer.
	AppendStreams(dst []*Stream, p Pattern) []*Stream
}
