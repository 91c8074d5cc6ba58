// Package ssetest holds what the tests of an SSE server need, once for the
// whole module:
//
//   - [Client]: one SSE client over raw TCP ([Open]; [OpenConn] takes a
//     connection the test made, [FromResponse] a body got over HTTP/2).
//     It sends a request as written
//     (method, target, headers, body), reads the HTTP/1.1 response head,
//     reads a chunked or close-delimited body, parses it into [Event]s
//     (type, data lines, id, retry, comments) stamped with their arrival
//     time, and lets a test wait for the event it expects, with a ceiling.
//     Because the test owns the socket, it can also close it like a tab,
//     reset it, stop reading, or drop its packets.
//   - [Eventually]: poll a condition until it holds, or fail the test with
//     what was awaited and for how long.
//   - [Logger]: a quiet [log/slog] logger that writes to the test's log.
//   - [Serve]: run a server's run function (the examples' run) on a free
//     loopback address until the test ends, once it takes connections.
//
// A test waits for the event it expects; it never sleeps for a fixed time
// and then asserts. Ceilings should be generous (seconds): they cost
// nothing when the event comes early, and a busy machine needs them.
package ssetest
