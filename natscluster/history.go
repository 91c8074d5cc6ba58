package natscluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere"
)

// The cluster's event log. With a history (Options.Hub.History.Size > 0)
// every broadcast and send goes into one JetStream stream, which numbers
// it, and every node applies the stream in order with
// [sfere.Hub.BroadcastAt]: each node's history is a copy of the log, so a
// position is valid on every node and a client resumes wherever it
// reconnects. The log is bounded like a hub's history (MaxMsgs = Size,
// MaxAge). Its epoch is the stream's creation time: a stream lost and
// made anew (a NATS server restarted without storage) starts a new epoch,
// and positions of the old one are not recovered. A consumer that finds
// the log moved past what it applied (JetStream starts a consumer at the
// first message it still has, silently) leaves a gap in the hubs'
// histories, which they report as positions no longer served.

const subjectEvents = ".events"

// A node pulls the log in requests of consumeExpiry, during which the
// server sends a heartbeat every consumeHeartbeat; two missed heartbeats
// make the consumer anew on a live server.
const (
	consumeExpiry    = 3 * time.Second
	consumeHeartbeat = time.Second
)

// event is one entry of the cluster's event log.
type event struct {
	Pattern sfere.Pattern  `json:"pattern"`
	Exclude *wireMatcher   `json:"exclude,omitempty"`
	Effects []sfere.Effect `json:"effects"`
	// Until is the event's deadline (Unix nanoseconds; 0: none): stored
	// after it, the event was refused to its caller, and no node delivers
	// it (see publish).
	Until int64 `json:"until,omitempty"`
	// Kind and Data, if Kind is set, are an app's event (see apps.go):
	// its handler delivers it; Pattern and Effects are empty.
	Kind string          `json:"kind,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

// eventLog is a node's end of the cluster's event log.
type eventLog struct {
	n        *Node
	js       jetstream.JetStream
	config   jetstream.StreamConfig
	timeout  time.Duration // of one JetStream round trip
	replicas int           // wanted; 0: 3 where the cluster can place them, else 1
	retryFor time.Duration // how long a publish retries

	checking sync.Mutex  // one check at a time
	reading  atomic.Bool // an expectApplied is reading the stream

	// life ends when the node closes: the background work (checks and
	// reads of the stream, see background) stops its requests, and close
	// waits for it in bg.
	life    context.Context
	lifeEnd context.CancelFunc
	bg      sync.WaitGroup

	// skips counts consumers that skipped events; lost counts events the
	// log dropped before this node applied them (see LogState).
	skips, lost atomic.Uint64

	mu       sync.Mutex
	epoch    string
	applied  uint64           // the last sequence applied in epoch
	storedAt time.Time        // when the log stored it (zero: not known)
	stream   jetstream.Stream // the log's stream, as last found (catchUp reads it)
	broken   bool             // the consumer lost its server: check makes a new one
	closed   bool             // the node closed: no new consumer
	consumer jetstream.ConsumeContext
}

// streamName is the JetStream stream of a cluster's event log: its
// prefix upper-cased, with what a stream name may not hold replaced.
func streamName(prefix string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r == ' ' || r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, strings.ToUpper(prefix)) + "_EVENTS"
}

// openLog finds or makes the log's stream and returns the log, its epoch
// and its last sequence; start begins applying it.
func openLog(ctx context.Context, n *Node, js jetstream.JetStream, h sfere.HistoryOptions, replicas int, retryFor time.Duration) (l *eventLog, epoch string, first, last uint64, err error) {
	l = &eventLog{n: n, js: js, timeout: n.timeout, replicas: replicas, retryFor: retryFor, config: jetstream.StreamConfig{
		Name:      streamName(n.prefix),
		Subjects:  []string{n.prefix + subjectEvents},
		MaxMsgs:   int64(h.Size),
		MaxAge:    h.MaxAge,
		Discard:   jetstream.DiscardOld,
		Retention: jetstream.LimitsPolicy,
		Storage:   jetstream.FileStorage,
	}}
	l.life, l.lifeEnd = context.WithCancel(context.Background())
	err = untilReady(ctx, n.log, "the event log", n.timeout, func(ctx context.Context) (err error) {
		epoch, first, last, err = l.ensure(ctx)
		return err
	})
	return l, epoch, first, last, err
}

// ensure makes the stream if it is missing, raises its replicas to the
// wanted count (never lowers them: another node may want more), and
// returns its epoch and last sequence.
func (l *eventLog) ensure(ctx context.Context) (epoch string, first, last uint64, err error) {
	have := 0
	if s, err := l.js.Stream(ctx, l.config.Name); err == nil {
		have = s.CachedInfo().Config.Replicas
	}
	var s jetstream.Stream
	err = withReplicas(l.replicas, have, func(r int) (err error) {
		cfg := l.config
		cfg.Replicas = r
		s, err = l.js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	if err != nil {
		return "", 0, 0, fmt.Errorf("natscluster: event log: %w", err)
	}
	l.mu.Lock()
	l.stream = s
	l.mu.Unlock()
	info := s.CachedInfo()
	if r := info.Config.Replicas; r > have && have > 0 {
		l.n.log.Info("cluster: event log replicas raised", "from", have, "to", r)
	}
	return strconv.FormatInt(info.Created.UnixNano(), 36), info.State.FirstSeq, info.State.LastSeq, nil
}

// start applies the log in epoch from sequence next on (1: from its
// first message), and returns once what the log held up to last is
// applied (or ctx ends). It stops the consumer it had first, so no two
// consumers deliver at once.
func (l *eventLog) start(ctx context.Context, epoch string, next, last uint64) error {
	l.stop()
	l.mu.Lock()
	if epoch != l.epoch {
		l.epoch, l.applied, l.storedAt = epoch, next-1, time.Time{}
	}
	l.mu.Unlock()
	// The consumer lives on one server, in memory: when that server is
	// lost, or a leader election of the log cuts it off, its heartbeats
	// stop and the error handler has it made anew from the message after
	// the last applied (see check).
	cfg := jetstream.ConsumerConfig{
		FilterSubjects:    l.config.Subjects,
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	}
	if next > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, next
	}
	cons, err := l.js.CreateConsumer(ctx, l.config.Name, cfg)
	if err != nil {
		return fmt.Errorf("natscluster: event log consumer: %w", err)
	}
	caughtUp := make(chan struct{})
	var once sync.Once
	if last < next {
		once.Do(func() { close(caughtUp) })
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil {
			return
		}
		if l.apply(epoch, meta.Sequence.Stream, meta.Timestamp, msg.Data()) >= last {
			once.Do(func() { close(caughtUp) })
		}
	}, jetstream.PullExpiry(consumeExpiry), jetstream.PullHeartbeat(consumeHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrConsumerNotFound) {
				l.breaks()
			}
		}))
	if err != nil {
		return fmt.Errorf("natscluster: event log consumer: %w", err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		cc.Stop()
		return nil
	}
	l.consumer, l.broken = cc, false
	l.mu.Unlock()
	// The events up to last may also be applied by a read of the stream
	// (catchUp), after which the consumer has none of them to deliver.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-caughtUp:
			return nil
		case <-tick.C:
			if l.next() > last {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("natscluster: event log: catching up to %d: %w", last, ctx.Err())
		}
	}
}

// apply writes one event of the log, stored at the time stored, to the
// local hub, if it is the next one of epoch, and returns the last
// sequence applied. An event stored after its deadline takes its place
// in the history but goes to no stream, now or on a replay: its
// publisher was told it was delivered nowhere. An event past the
// next one is a gap (a consumer placed on a replica still catching up
// skips what that replica lacks): it is not applied, and the consumer is
// made anew from the next one (see check), unless the log no longer has
// it.
func (l *eventLog) apply(epoch string, seq uint64, stored time.Time, data []byte) uint64 {
	l.mu.Lock()
	applied := l.applied
	switch {
	case epoch != l.epoch || seq <= applied:
		l.mu.Unlock()
		return applied // an old epoch's, or applied already
	case seq > applied+1:
		l.mu.Unlock()
		if l.breaks() {
			l.skips.Add(1)
			l.n.log.Info("cluster: the event log consumer skipped events", "applied", applied, "got", seq)
		}
		return applied
	}
	l.mu.Unlock()
	var e event
	if err := json.Unmarshal(data, &e); err != nil {
		l.n.log.Warn("cluster: bad event in the log", "seq", seq, "err", err)
	} else if !l.n.apps.hold(l, sfere.Position{Epoch: epoch, Offset: seq}, stored, e) {
		l.deliver(sfere.Position{Epoch: epoch, Offset: seq}, stored, e)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if epoch == l.epoch && seq == l.applied+1 {
		l.applied, l.storedAt = seq, stored
	}
	return l.applied
}

// deliver delivers the event e of the log, at pos, stored at stored, to
// the local hub: an app's event through its kind's handler (apps.go), a
// broadcast or send at once.
func (l *eventLog) deliver(pos sfere.Position, stored time.Time, e event) {
	late := e.Until != 0 && stored.UnixNano() > e.Until
	if e.Kind != "" {
		l.n.applyApp(pos, stored, e, late)
		return
	}
	exclude := e.Exclude.matcher()
	if late {
		exclude = sfere.All
		l.n.logLate.Add(1)
	}
	res, err := l.n.hub.BroadcastAt(pos, e.Pattern, exclude, e.Effects...)
	if err != nil {
		l.n.log.Warn("cluster: event not delivered", "seq", pos.Offset, "err", err)
	}
	l.n.logDelivered.Add(uint64(res.Delivered))
	l.n.logFailed.Add(uint64(res.Failed))
}

// breaks marks the consumer broken (lost, or skipping events) and has
// check make a new one; it reports whether the consumer was not marked
// broken yet.
func (l *eventLog) breaks() bool {
	l.mu.Lock()
	was := l.broken
	l.broken = true
	l.mu.Unlock()
	if !was {
		l.background(l.check)
	}
	return !was
}

// check makes sure the log's stream still exists and is the one being
// applied; a stream made anew (new epoch) is applied from its start. The
// node calls it every interval and after reconnecting to NATS.
func (l *eventLog) check() {
	if !l.checking.TryLock() {
		return
	}
	defer l.checking.Unlock()
	ctx, cancel := context.WithTimeout(l.life, l.timeout)
	defer cancel()
	var (
		epoch       string
		first, last uint64
	)
	s, err := l.js.Stream(ctx, l.config.Name)
	if err == nil {
		info := s.CachedInfo()
		epoch, first, last = strconv.FormatInt(info.Created.UnixNano(), 36), info.State.FirstSeq, info.State.LastSeq
	} else if errors.Is(err, jetstream.ErrStreamNotFound) {
		epoch, first, last, err = l.ensure(ctx)
		s = nil
	}
	if err != nil {
		if errors.Is(err, nats.ErrReconnectBufExceeded) {
			return // NATS is out of reach: checked again when it is back
		}
		l.n.log.Warn("cluster: event log unavailable", "err", err)
		// The stream's leader may still serve its events when nothing
		// else of JetStream answers (its meta leader being elected).
		l.catchUpNow()
		return
	}
	if s != nil && epoch == l.currentEpoch() {
		l.mu.Lock()
		l.stream = s
		l.mu.Unlock()
	}
	l.mu.Lock()
	same, broken, next := epoch == l.epoch, l.broken || l.consumer == nil, l.applied+1
	l.mu.Unlock()
	if same {
		if !broken {
			return
		}
		// The consumer was lost (its server, a leader election) or
		// skipped events: a new one goes on from the message after the
		// last applied, or from the log's first if that one is gone.
		if first > next {
			l.n.log.Warn("cluster: the event log moved on past what this node applied", "applied", next-1, "first", first)
			l.mu.Lock()
			if l.epoch == epoch && l.applied < first-1 {
				l.lost.Add(first - 1 - l.applied)
				l.applied, l.storedAt = first-1, time.Time{}
			}
			l.mu.Unlock()
			next = first
		}
		// What the log holds is read from the stream itself first: a
		// consumer may not be made for seconds (see catchUp).
		if s != nil {
			l.catchUp(ctx, epoch, last)
			next = l.next()
		}
		l.n.log.Info("cluster: event log consumer made anew", "from", next)
		if err := l.start(ctx, epoch, next, last); err != nil {
			l.n.log.Warn("cluster: event log", "err", err)
			// The log may have taken more while the consumer was
			// being made: read those too, with a bound of their own.
			l.catchUpNow()
		}
		return
	}
	l.n.log.Warn("cluster: event log is new: positions of the old one are not resumed", "epoch", epoch)
	if err := l.n.hub.ResetHistory(epoch); err != nil {
		l.n.log.Warn("cluster: event log", "err", err)
		return
	}
	if err := l.start(ctx, epoch, max(first, 1), last); err != nil {
		l.n.log.Warn("cluster: event log", "err", err)
	}
}

// catchUp applies the events of epoch after the last applied, up to
// last (0: as far as the stream goes), reading them one by one from the
// log's stream as last found (its leader answers) rather than through a
// consumer, and returns how many it applied. Making a consumer needs
// JetStream's meta leader, which the loss of a NATS server can leave
// unelected for seconds while the stream still takes events and serves
// them: every node's consumer on the lost server is gone then, and
// without this no node would deliver what the log took in that time, each
// line accepted with a 200 reaching its pages only seconds later (or, for
// a page that goes away meanwhile, never). Without a last known from the
// stream's state, it first checks that the stream still holds the last
// event applied as it was stored (it is the same log, not one made anew).
// It stops at the first event it cannot read (past the newest, dropped by
// the log, or the stream out of reach), where the consumer made next goes
// on.
func (l *eventLog) catchUp(ctx context.Context, epoch string, last uint64) (applied int) {
	l.mu.Lock()
	s, next, storedAt, same := l.stream, l.applied+1, l.storedAt, l.epoch == epoch
	l.mu.Unlock()
	if s == nil || !same {
		return 0
	}
	if last == 0 {
		if next == 1 || storedAt.IsZero() {
			return 0
		}
		m, err := s.GetMsg(ctx, next-1)
		if err != nil || !m.Time.Equal(storedAt) {
			return 0
		}
	}
	for {
		l.mu.Lock()
		next, same = l.applied+1, l.epoch == epoch
		l.mu.Unlock()
		if !same || last != 0 && next > last || ctx.Err() != nil {
			return applied
		}
		m, err := s.GetMsg(ctx, next)
		if err != nil || m.Sequence != next {
			return applied
		}
		if l.apply(epoch, m.Sequence, m.Time, m.Data) < next {
			return applied
		}
		if applied++; applied == 1 {
			l.n.log.Info("cluster: reading the event log's stream while its consumer is lost", "from", next)
		}
	}
}

// catchUpNow is catchUp as far as the stream goes, with a bound of its
// own.
func (l *eventLog) catchUpNow() {
	ctx, cancel := context.WithTimeout(l.life, l.timeout)
	defer cancel()
	l.catchUp(ctx, l.currentEpoch(), 0)
}

// appliedWithin is how long after the log acknowledged an event this
// node published its consumer may take to apply it before the node reads
// the log's stream itself (see expectApplied).
const appliedWithin = 500 * time.Millisecond

// expectApplied makes sure this node applies seq, the sequence the log
// gave an event it published, soon: if its consumer has applied nothing
// since, and not seq, within appliedWithin, the node reads what it lacks
// from the stream (catchUp). A consumer lost with its server is found
// only after two missed heartbeats, and made anew only once JetStream's
// meta leader is back; the event is in the log already, and this node's
// pages are owed it now. A consumer that is merely behind (a busy
// machine) goes on alone.
func (l *eventLog) expectApplied(seq uint64) {
	l.mu.Lock()
	was := l.applied
	l.mu.Unlock()
	time.AfterFunc(appliedWithin, func() {
		l.mu.Lock()
		behind := !l.closed && l.applied < seq && l.applied == was
		l.mu.Unlock()
		if behind && l.reading.CompareAndSwap(false, true) {
			l.background(func() {
				defer l.reading.Store(false)
				l.catchUpNow()
			})
		}
	})
}

// next returns the sequence after the last applied.
func (l *eventLog) next() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applied + 1
}

// currentEpoch returns the epoch of the log being applied.
func (l *eventLog) currentEpoch() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch
}

// stop stops applying the log.
func (l *eventLog) stop() {
	l.mu.Lock()
	cc := l.consumer
	l.consumer = nil
	l.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
}

// background runs f on a goroutine of its own that close waits for (and
// ends the requests of), unless the log is closed.
func (l *eventLog) background(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		f()
	}()
}

// close stops applying the log for good, and waits for the background
// work to end.
func (l *eventLog) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.lifeEnd()
	l.bg.Wait()
	l.stop() // a check under way may have made a consumer
}
