package catcher

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// Bodies are read into pooled chunks that grow with what has arrived
// (4 KiB, 8 KiB, ... 64 KiB), never into a buffer sized by Content-Length:
// a client that declares 1 MiB and sends nothing costs nothing, and one that
// sends n bytes holds about 2n at most. The chunks are copied into one
// buffer of the exact size once the body is complete.
const (
	minChunkShift = 12 // 4 KiB
	chunkClasses  = 5  // up to 64 KiB
)

var chunkPools [chunkClasses]sync.Pool

func init() {
	for i := range chunkPools {
		size := 1 << (minChunkShift + i)
		chunkPools[i].New = func() any { b := make([]byte, size); return &b }
	}
}

// memory is the budget of body bytes held at once by all requests.
type memory struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes; false when that would exceed the budget.
func (m *memory) take(n int64) bool {
	if m.used.Add(n) > m.max {
		m.used.Add(-n)
		return false
	}
	return true
}

func (m *memory) give(n int64) { m.used.Add(-n) }

// readBody reads the whole body, never more than limit+1 bytes, charging
// the bytes it holds to h.mem. On success the caller owns the returned
// buffer and must give back its length to h.mem when the request ends.
// first is a one-byte buffer of the caller's.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, limit int64, first []byte) ([]byte, *rejection) {
	if r.ContentLength > limit {
		closeAfter(w)
		return nil, tooLarge(limit) // declared too large: do not read at all
	}
	if r.Body == nil { // a hand-made request; servers always set one
		return nil, reject(http.StatusBadRequest, ReasonEmpty, "empty body", nil)
	}
	// The first byte goes into a tiny buffer, so that a request whose body
	// has not started to arrive holds no chunk while it waits.
	n, err := fill(r.Body, first[:1])
	if n == 0 {
		return nil, readRejection(err)
	}
	type chunk struct {
		buf   *[]byte
		class int
		n     int
	}
	var (
		small    [8]chunk
		chunks   = small[:0]
		held     int64 // bytes charged to h.mem for the chunks
		total    int
		overflow bool
	)
	defer func() {
		for _, c := range chunks {
			chunkPools[c.class].Put(c.buf)
		}
		h.mem.give(held)
	}()
	// The first byte may come with the end of the body (a reader may
	// return data and io.EOF at once): it goes into the first chunk anyway.
	for pending := true; pending || err == nil; pending = false {
		class := min(len(chunks), chunkClasses-1)
		size := int64(1) << (minChunkShift + class)
		if !h.mem.take(size) {
			closeAfter(w)
			return nil, errBusy
		}
		held += size
		buf := chunkPools[class].Get().(*[]byte)
		// Never read past limit+1: one byte over tells "too large".
		c := (*buf)[:min(int64(len(*buf)), limit+1-int64(total))]
		k := 0
		if pending {
			c[0] = first[0]
			k = 1
		}
		if err == nil {
			n, err = fill(r.Body, c[k:])
			k += n
		}
		total += k
		chunks = append(chunks, chunk{buf: buf, class: class, n: k})
		if int64(total) > limit {
			overflow = true
			break
		}
	}
	switch {
	case overflow:
		closeAfter(w)
		return nil, tooLarge(limit)
	case !errors.Is(err, io.EOF):
		return nil, readRejection(err)
	}
	// The exact-size copy replaces the chunks in the budget: it is never
	// larger, so a body that was read is never refused here.
	body := make([]byte, total)
	off := 0
	for _, c := range chunks {
		off += copy(body[off:], (*c.buf)[:c.n])
	}
	h.mem.give(held - int64(total))
	held = 0
	return body, nil
}

// fill reads into p until it is full or the reader fails; a clean end of
// the body is io.EOF, a truncated one whatever the body reports.
func fill(r io.Reader, p []byte) (n int, err error) {
	for n < len(p) && err == nil {
		var k int
		k, err = r.Read(p[n:])
		n += k
	}
	return n, err
}

func tooLarge(limit int64) *rejection {
	return reject(http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body exceeds %d bytes", limit), nil)
}

func readRejection(err error) *rejection {
	switch {
	case errors.Is(err, io.EOF):
		return reject(http.StatusBadRequest, ReasonEmpty, "empty body", nil)
	case isTimeout(err):
		return reject(http.StatusRequestTimeout, ReasonReadError, "timed out reading the body", err)
	default:
		return reject(http.StatusBadRequest, ReasonReadError, "could not read the body", err)
	}
}

// closeAfter makes the server close the connection after the answer: the
// rest of the body is not read, and must not be taken as the next request.
func closeAfter(w http.ResponseWriter) { w.Header().Set("Connection", "close") }
