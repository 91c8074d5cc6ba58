package sfere

// Publisher reaches live streams by key or pattern. A [*Hub] reaches the
// streams of one process; a natscluster.Node reaches those of every node
// of a cluster, with the same signatures. Application code that takes a
// Publisher runs unchanged on one node or on a cluster:
//
//	func announce(p sfere.Publisher, name string) error {
//		_, err := p.Broadcast(sfere.InCategory("lobby"), nil,
//			sfere.AppendElements("#messages", "<div>"+html.EscapeString(name)+" joined</div>"))
//		return err
//	}
type Publisher interface {
	// Broadcast queues effects to every stream matching p except those
	// exclude matches (nil excludes none).
	Broadcast(p Pattern, exclude Matcher, effects ...Effect) (Result, error)
	// Send queues effects to the stream under key; the error wraps
	// [ErrNoStream] if there is none.
	Send(key Key, effects ...Effect) (Result, error)
	// List returns the keys matching p, in no particular order.
	List(p Pattern) []Key
	// Count returns how many keys match p.
	Count(p Pattern) int
}

var _ Publisher = (*Hub)(nil)
