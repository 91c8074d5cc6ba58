// Package sfere keeps live Datastar Server-Sent-Event streams under
// meaningful keys, reaches them by key or by pattern from any goroutine, and
// says, exactly once and with a cause, when each one has gone.
//
// A stream is one long HTTP response. The app opens it in a handler with a
// [Hub], which stores it in a [Store] under a [Key]; from then on, any
// goroutine can [Hub.Broadcast] to every stream matching a [Pattern], or
// [Hub.Send] to one key, and the stream's end (a closed tab, a dead peer, a
// replaced key, an expiry) is reported once to the store's [EvictFunc].
//
//	store := sfere.NewMemoryStore(sfere.MemoryOptions{
//		OnEvict: func(ev sfere.Eviction) { log.Print(ev.Key, " left: ", ev.Cause) },
//	})
//	hub := sfere.NewHub(store, sfere.HubOptions{})
//	http.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
//		key := sfere.NewKey(sfere.DefaultScope, "lobby", userFromSession(r))
//		hub.Serve(w, r, key, sfere.PatchElements(participantList()))
//	})
//	hub.Broadcast(sfere.InCategory("lobby"), nil, sfere.AppendElements("#messages", line))
//
// # Keys and patterns
//
// A [Key] is three strings, (scope, category, id): a tenant or
// [DefaultScope], what the stream is for ("lobby"), and who or what it
// serves ("brian"). Any strings are valid, "*" too; its text form
// scope/category/id is percent-encoded and round-trips through [ParseKey].
//
// A [Pattern] has the same three places, each an exact string ([Exactly])
// or the wildcard [Any]: [InCategory]("lobby") is */lobby/*, [All] matches
// every key, and a key's own [Key.Pattern] matches just it. A [Matcher] (a
// Pattern, a Key, or a [KeySet] from [Keys]) names the streams a broadcast
// leaves out.
//
// # Stores and eviction causes
//
// A [Store] holds the live streams. [MemoryStore] is a map; [TTLStore]
// expires streams after a sliding or fixed duration and caps their number.
// Every stream that leaves a store, for whatever reason, is ended and
// reported exactly once to the store's [EvictFunc], as an [Eviction] with
// one [Cause]:
//
//   - [CauseClosed]: the stream ended by itself; [Eviction.Err] says how:
//     [ErrClientGone] (the client went away), [ErrWrite] (a write failed or
//     timed out), [ErrSlowClient] (its queue overflowed), [ErrClosedByApp]
//     (the app sent [CloseStream]), [ErrClientData], [ErrHubClosed];
//   - [CauseExplicit]: the app purged it ([Store.Purge]);
//   - [CauseReplaced]: another stream was stored under the same key;
//   - [CauseExpired] and [CauseSize]: the [TTLStore] let it go;
//   - [CauseNodeLost]: the cluster node that held it stopped answering
//     (reported by a cluster package, never by a local store).
//
// # The hub
//
// [Hub.Serve] stores a stream, writes its initial effects and returns once
// the stream has ended and its eviction callback has returned. [Hub.Detach]
// returns as soon as the stream is stored, and the stream lives on without
// its handler; [Stream.AfterEnd] then releases what the app holds for it.
// Over HTTP/1.1 without TLS the hub takes the connection over from net/http
// and a few writer goroutines write every stream; over HTTP/2 or TLS the
// stream stays on net/http's response writer. Both work the same for the
// app.
//
// [Hub.Broadcast] renders its effects ([Effect]: [PatchElements],
// [AppendElements], [RemoveElements], [PatchSignals], [ExecuteScript],
// [Comment], [CloseStream]; every option of Datastar 1.0 is a method on
// the effect, e.g. [Effect.WithViewTransition], [Effect.InNamespace],
// [Effect.Kept]) once and queues the bytes to every matching
// stream; [Hub.Send] queues them to one key and returns an error wrapping
// [ErrNoStream] if none is stored. Neither waits for a client: each stream
// has a bounded queue ([HubOptions.MaxQueueBytes]) and a write deadline
// ([HubOptions.WriteTimeout]), so a slow or dead client only fails its own
// stream. [Hub.List] and [Hub.Count] see the stored keys, and
// [Hub.Shutdown] ends every stream.
//
// A [Publisher] is what Broadcast, Send, List and Count have in common: a
// Hub reaches the streams of one process, a cluster node (package
// natscluster) those of several, and code that takes a Publisher works
// with either.
//
// # Compression
//
// With [HubOptions.Compression] set, a stream whose client accepts gzip is
// written gzip, on either path. Each broadcast is compressed once, by a
// compressor the hub shares between the streams that received the same
// events since its last full flush, and the same compressed bytes are
// written to each of them: compressed fan-out costs about what
// uncompressed fan-out does, with a ninth of the bytes on the wire. See
// [CompressionOptions].
//
// # Heartbeat
//
// SSE is one-way: a closed tab is noticed at once (its connection closes),
// but a client that vanished is noticed only when a write to it fails. A
// [Heartbeat] writes an SSE comment, which the Datastar client ignores, to
// every stream matching a pattern on an interval, so such a stream does not
// outlive its client by much more than an interval (see the listener below)
// and its eviction callback runs. Streams busy with the app's own traffic
// are skipped; [Heartbeat.Stats] counts sweeps, writes and failures:
//
//	stop := sfere.NewHeartbeat(hub, sfere.InCategory("lobby"), 10*time.Second).Start()
//	defer stop()
//
// # Listener and vanished peers
//
// A client whose machine vanished (no FIN) does not fail a write at once:
// the bytes wait in the kernel's buffer for up to ~15 minutes. [Listen]
// opens a listener with TCP_USER_TIMEOUT and keepalive ([ListenOptions]),
// so such a connection is aborted within the heartbeat interval plus the
// user timeout; with [ConnContext] set on the [net/http.Server], that
// stream's [Eviction.Err] wraps [ErrPeerVanished], which tells a vanished
// client from a closed tab:
//
//	ln, err := sfere.Listen(ctx, "tcp", ":8080", sfere.ListenOptions{UserTimeout: 5 * time.Second})
//	if err != nil {
//		return err
//	}
//	srv := &http.Server{Handler: mux, ConnContext: sfere.ConnContext}
//	return srv.Serve(ln)
//
// # Cluster
//
// Package github.com/sfere-go/sfere/natscluster joins the hubs of several
// processes over NATS: a broadcast or a send on any node reaches streams
// on every node, a key opened on a second node replaces the first node's
// stream, and the streams of a lost node are reported with [CauseNodeLost].
//
// # People, not streams
//
// A hub knows streams; an app usually wants people. Package
// github.com/sfere-go/sfere/presence counts a person once however many
// tabs they have open, and says once when they arrive and when they leave
// (after a grace period that a reload fits in): each tab is a stream under
// its own key, a new stream gets the room's state and then only changes,
// batched in a storm. Its subpackage natspresence makes it cluster-wide.
package sfere
