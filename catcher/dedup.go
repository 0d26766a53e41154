package catcher

import (
	"crypto/sha256"
	"sync"
	"time"
)

// dedupWindow is the SQS deduplication interval of FIFO queues.
const dedupWindow = 5 * time.Minute

// dedupTableSize bounds the deduplication ids remembered for conflict
// checks (about 100 bytes each). Past it the oldest are forgotten: a
// conflict with a forgotten id is no longer answered 409, but its message
// is stored on its own (the id sent to SQS binds the body), so no 202 ever
// names another request's message.
const dedupTableSize = 50_000

type digest = [sha256.Size]byte

// fingerprint is the deduplication id sent to SQS for a FIFO message. Each
// part is length-prefixed, so no two different tuples hash the same input.
func fingerprint(ns, dedup, group string, body []byte) digest {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(ns), []byte(dedup), []byte(group), body} {
		var n [8]byte
		for i, l := 0, len(part); i < 8; i, l = i+1, l>>8 {
			n[i] = byte(l)
		}
		h.Write(n[:])
		h.Write(part)
	}
	var d digest
	h.Sum(d[:0])
	return d
}

// dedupKey identifies a client's deduplication id within its namespace and,
// for queues with DeduplicationScope messageGroup, its group.
func dedupKey(ns, dedup, scope string) digest {
	return fingerprint(ns, dedup, scope, nil)
}

// dedupTable remembers which message each client deduplication id stands
// for, while requests with it are in progress and for the deduplication
// window after one was stored.
type dedupTable struct {
	mu      sync.Mutex
	max     int
	entries map[digest]dedupEntry
	order   []dedupRef // stored ids in the order their windows end
}

type dedupEntry struct {
	fp      digest    // the message the id stands for
	pending int       // requests with this id not yet answered
	expires time.Time // end of the window; zero until one was stored
}

type dedupRef struct {
	key     digest
	expires time.Time
}

// dedupClaim is a request's hold on its deduplication id.
type dedupClaim struct {
	key, fp digest
}

func newDedupTable(maxEntries int) *dedupTable {
	return &dedupTable{max: maxEntries, entries: make(map[digest]dedupEntry)}
}

// claim takes key for the message fp; false if key stands for another
// message, in progress or stored within the window.
func (t *dedupTable) claim(key, fp digest, now time.Time) (*dedupClaim, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(now)
	e, ok := t.entries[key]
	live := ok && (e.pending > 0 || now.Before(e.expires))
	if live && e.fp != fp {
		return nil, false
	}
	if !live {
		e = dedupEntry{fp: fp}
	}
	e.pending++
	t.entries[key] = e
	return &dedupClaim{key: key, fp: fp}, true
}

// release ends a claim; stored says SQS took the message, which starts (or
// renews) the window in which the id stands for it.
func (t *dedupTable) release(c *dedupClaim, stored bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[c.key]
	e.pending--
	if stored {
		e.expires = now.Add(dedupWindow)
		t.order = append(t.order, dedupRef{key: c.key, expires: e.expires})
	}
	if e.pending == 0 && !now.Before(e.expires) {
		delete(t.entries, c.key) // never stored, or its window is over
	} else {
		t.entries[c.key] = e
	}
	t.pruneLocked(now)
}

// pruneLocked forgets ids whose window ended, and the oldest ones past max.
func (t *dedupTable) pruneLocked(now time.Time) {
	n := 0
	for n < len(t.order) {
		ref := t.order[n]
		if now.Before(ref.expires) && len(t.order)-n <= t.max {
			break
		}
		n++
		// A later store of the same id renewed it: that ref is further on.
		if e, ok := t.entries[ref.key]; ok && e.expires.Equal(ref.expires) && e.pending == 0 {
			delete(t.entries, ref.key)
		}
	}
	t.order = t.order[n:] // append reallocates only the live part
}
