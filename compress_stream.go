package sfere

import (
	"encoding/binary"
	"hash/crc32"
)

// A compressed stream's body is one gzip member (RFC 1952) around one
// DEFLATE stream (RFC 1951) that never ends until the response does. The
// member's header and trailer (the CRC-32 and length of what the client
// decodes) are the stream's own; the DEFLATE blocks in between come from
// its group when the stream is in step with it (compress_group.go), and
// are stored blocks of its own otherwise. Every message's blocks end on
// a byte boundary with no block left open (the group's end in a sync
// flush, a stored block is whole), so any message's blocks may follow
// any other's.

// gzipHeader begins every compressed stream: gzip, DEFLATE, no flags, no
// modification time, no extra flags, unknown OS.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// emptyBlock is an empty, non-final stored block: it adds nothing to what
// the client decodes (a heartbeat comment's bytes on a compressed stream).
var emptyBlock = []byte{0, 0, 0, 0xff, 0xff}

// maxStored is the most bytes one stored block carries.
const maxStored = 1<<16 - 1

// gzipStream is one compressed stream's state, kept by whoever writes the
// stream (one writer at a time, as for the stream's queue).
type gzipStream struct {
	started bool   // the header was written
	crc     uint32 // of every byte the client decodes so far
	size    uint32 // how many, modulo 2^32

	// The group output the stream wrote last, if it is in step with its
	// group: its next message may take the group's bytes if they are the
	// next of the same segment (see inStep).
	group *group
	seg   uint64
	seq   uint64
}

// appendMessages appends to dst the bytes that carry msgs to the client
// (the header first, the first time) and returns it. It allocates nothing
// once dst has room.
func (z *gzipStream) appendMessages(dst []byte, msgs []*message) []byte {
	if !z.started {
		dst = append(dst, gzipHeader...)
		z.started = true
	}
	open := false // stored data was written with no empty block after it
	for _, m := range msgs {
		switch {
		case len(m.data) == 0:
		case m.heartbeat && m.data[0] == ':':
			// A comment: nothing for the page, and an empty block keeps
			// the stream in step with its group.
			dst = append(dst, emptyBlock...)
			open = false
		default:
			dst, open = z.appendData(dst, m)
		}
	}
	if open {
		// An empty stored block after the data: a decoder hands out what
		// it decoded at such a block (the group's sync flush ends with
		// one too), where it might otherwise wait for more.
		dst = append(dst, emptyBlock...)
	}
	return dst
}

// appendData appends m's data, as its group compressed it if the stream
// is in step with the group, as stored blocks otherwise (stored is then
// true).
func (z *gzipStream) appendData(dst []byte, m *message) (_ []byte, stored bool) {
	z.crc = crc32.Update(z.crc, crc32.IEEETable, m.data)
	z.size += uint32(len(m.data))
	if p := m.packed; p != nil {
		if z.inStep(p) {
			z.group, z.seg, z.seq = p.group, p.seg, p.seq
			return append(dst, p.data...), false
		}
		p.group.waiting.Store(true)
	}
	if z.group != nil {
		// Out of step from here on: the group is asked for a full flush
		// (within its join delay) so the stream can rejoin.
		z.group.waiting.Store(true)
		z.group = nil
	}
	return appendStored(dst, m.data), true
}

// inStep reports whether the group's bytes p may follow what the stream
// wrote: p begins a segment (the compressor had forgotten everything), or
// it is the next output of the segment whose previous output the stream
// wrote last (so everything p refers back to is what the client decoded
// last, in the same order).
func (z *gzipStream) inStep(p *packed) bool {
	return p.seq == 1 || p.group == z.group && p.seg == z.seg && p.seq == z.seq+1
}

// appendStored appends data as non-final stored blocks.
func appendStored(dst, data []byte) []byte {
	for len(data) > 0 {
		n := min(len(data), maxStored)
		dst = append(dst, 0, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		dst = append(dst, data[:n]...)
		data = data[n:]
	}
	return dst
}

// appendTrailer appends what ends the stream's gzip member: an empty
// final block (fixed Huffman codes: the final bit, the type, the
// end-of-block code), then the CRC-32 and length of what the client
// decoded. Nothing, if the header was never written.
func (z *gzipStream) appendTrailer(dst []byte) []byte {
	if !z.started {
		return dst
	}
	dst = append(dst, 0x03, 0x00)
	dst = binary.LittleEndian.AppendUint32(dst, z.crc)
	return binary.LittleEndian.AppendUint32(dst, z.size)
}
